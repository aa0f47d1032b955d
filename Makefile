# The two commands of the README. Everything they need is installed by scripts/setup.sh.
.PHONY: run test

## Build and run the server: SQLite under ./data, in-process fan-out, http://127.0.0.1:8080
run:
	scripts/setup.sh
	cd web && npm ci && npm run build
	cargo run --release --locked -p pychat -- serve

## Run every check and test (fmt, clippy, unit and integration tests on every configured backend)
test:
	scripts/test.sh
