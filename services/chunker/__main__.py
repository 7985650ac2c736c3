from ragbus.runner import main

main(["chunker"])
