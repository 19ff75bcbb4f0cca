from centre.cli import main

main()
