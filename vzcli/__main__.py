from vzcli.entry import main

main()
