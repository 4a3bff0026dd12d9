# analysis-worker: its accuracy test compares the Python analyzer with CPython's own `ast` module on the
# machine's standard library, so it needs python3.
apt_need python3 python3
