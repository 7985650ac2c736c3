from ragbus.runner import main

main(["ingest"])
