from announcer.cli import main

main()
