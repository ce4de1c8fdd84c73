from looptools.cli import main

main()
