"""The admin web UI: an aiohttp application that talks to the other services over NATS only.

Every read and write goes through the admin and Chron request subjects with the logged-in admin's
own token, so roles, org boundaries and two-person control apply exactly as in the CLI. One read
does not: the live feed (:mod:`claiim_admin.feed`) follows the whole decision stream with the UI's
own NATS user, and each page gets only the decisions of its admin's org. The UI itself holds no
secret but its sessions (in memory: a restart logs everyone out) and verifies
Chron's checkpoints and proofs with the log's public key.
"""
