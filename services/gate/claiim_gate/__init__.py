"""The gate: answers ALLOW or DENY to agents, recording every decision before it replies."""
