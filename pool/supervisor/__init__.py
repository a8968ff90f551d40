"""The supervisor's role: converge real member processes to the desired state in the database.

reconcile (the loop), process (spawn and stop), health (probes); the GGUF the members
serve is chosen at the shared level (pool/model_file.py), which the gateway reads too. State changes go through pool/services/member_state.py, which the gateway's passive
check shares.
"""
