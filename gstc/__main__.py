from gstc.cli import main

main()
