from claiim.mcp.cli import main

main()
