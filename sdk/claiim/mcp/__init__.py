"""claiim in front of MCP servers: ``claiim mcp proxy`` (:mod:`claiim.mcp.proxy`), configured with
the ``mcpServers`` file MCP clients use (:mod:`claiim.mcp.config`). Needs ``pip install 'claiim[mcp]'``;
docs/mcp.md says how to point an MCP client at it."""
