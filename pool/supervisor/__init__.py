"""The supervisor's role: converge real member processes to the desired state in the database.

reconcile (the loop), process (spawn and stop), health (probes), transitions (the one
place a member's state changes), model_file (the GGUF the members serve).
"""
