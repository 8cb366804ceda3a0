from tkds.cli import main

main()
