from pairlib.app.cli import main

main()
