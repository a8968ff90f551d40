"""The operators' role: the dashboard's pages and websocket, the snapshot it shows, alert
rules and the autoscaler. It reaches the gateway and the supervisor only through the
database and the channel layer."""
