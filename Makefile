# The two commands of the README. Everything they need is installed by scripts/setup.sh.
.PHONY: run test bench soak

## Build and run the server: SQLite under ./data, in-process fan-out, http://127.0.0.1:8080
run:
	scripts/setup.sh
	cd web && npm ci && npm run build
	cargo run --release --locked -p pychat -- serve

## Run every check and test (fmt, clippy, unit and integration tests on every configured backend)
test:
	scripts/test.sh

## The benchmark comparison (pychat and the peers of bench/peers, every scenario and the latency-
## against-load sweeps, ~35 min; exits 3 when a pychat curve is non-monotonic):
## writes bench/results/<date>.json, the plots in docs/bench/ and the tables of docs/benchmarks.md
bench:
	scripts/setup.sh bench
	bench/peers/install.sh
	cargo build --release --locked -q -p pychat -p pychat-bench
	target/bench-venv/bin/python bench/run.py

## The generated fault sequence for 5 minutes per database (PYCHAT_FAULT_SEED=<n> replays one):
## instances killed and SIGTERMed, Redis killed and stalled, the database crashed, under traffic
soak:
	cargo build --locked -q -p pychat
	PYCHAT_SOAK_SECS=$${PYCHAT_SOAK_SECS:-300} cargo test --locked -p pychat --test faults \
		random_faults -- --nocapture --test-threads=2
