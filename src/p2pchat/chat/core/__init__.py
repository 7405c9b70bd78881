"""The chat's sans-IO cores: CBOR, packets, rosters, quorum, validation, the DAG, E2E crypto,
the wire framing and the group engine. Nothing here imports trio, sqlite3 or a driver, or reads
a clock: time comes in as an argument (specs/chat.md).
"""
