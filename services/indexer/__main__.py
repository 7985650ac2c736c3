from ragbus.runner import main

main(["indexer"])
