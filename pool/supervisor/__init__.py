"""The supervisor's role: converge real member processes to the desired state in the database.

reconcile (the loop), process (spawn and stop), health (probes), model_file (the GGUF the
members serve). State changes go through pool/transitions.py, which the gateway's passive
check shares.
"""
