"""The auth service: NATS auth callout for agents and admins, who connect with their claiim tokens."""
