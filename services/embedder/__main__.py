from ragbus.runner import main

main(["embedder"])
