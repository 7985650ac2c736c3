from ragbus.runner import main

main(["query"])
