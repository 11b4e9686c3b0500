from inference.cli import main

main()
