"""The operators' role: the dashboard's pages and websocket, and the snapshot they show. It
reaches the gateway and the supervisor only through the database, the channel layer and
the shared level; it shows what the control loops (pool/loops/) measure and decide."""
