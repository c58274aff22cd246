from pairlib.cli import main

main()
