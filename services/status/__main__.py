from ragbus.runner import main

main(["status"])
