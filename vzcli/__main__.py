from vzcli.cli import main

main()
