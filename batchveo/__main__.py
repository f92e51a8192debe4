from batchveo.cli import main

main()
