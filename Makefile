# mtls-metrics-proxy. Run "make help" for the targets.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: help build demo demo-keep test test-unit test-integration test-examples fuzz vet \
	image bench soak clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

build: ## build the proxy and the example daemon into ./bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/mtls-metrics-proxy ./examples/diagd

demo: build ## run the demo: a daemon behind the proxy, scraped with and without certificates
	$(GO) build -o $(BIN)/demo ./examples/demo
	$(BIN)/demo --bin $(BIN)

demo-keep: build ## like demo, but keep it running for scraping by hand (Ctrl-C stops it)
	$(GO) build -o $(BIN)/demo ./examples/demo
	$(BIN)/demo --bin $(BIN) --keep

test: vet ## run every test: unit, fuzz seeds, integration with real Prometheus
	$(GO) test -race -count=1 ./...

test-unit: ## run the unit tests only
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

test-integration: ## run the integration tests only
	$(GO) test -count=1 -v ./integration/

test-examples: ## check the examples: configs, manifests, Dockerfile, systemd unit
	$(GO) test -count=1 -v -run '^TestExample' ./integration/

IMAGE ?= mtls-metrics-proxy
image: ## build the proxy's and diagd's container images (Docker with BuildKit)
	docker build -t $(IMAGE):$(VERSION) --build-arg VERSION=$(VERSION) .
	docker build -t diagd:$(VERSION) --target diagd .

BENCHFLAGS ?=
bench: build ## compare the proxy with direct mTLS, HAProxy, nginx and Caddy (about 5 minutes)
	$(GO) run ./cmd/scrapebench run --proxy-bin $(BIN)/mtls-metrics-proxy \
	  --json $(BIN)/bench.json $(BENCHFLAGS)

SOAK_DURATION ?= 2m
soak: ## mix valid and hostile clients against the binary for SOAK_DURATION (default 2m); not in CI
	SOAK=1 SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -v -timeout 30m \
	  -run '^TestSoak$$' ./integration/

FUZZTIME ?= 30s
fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

vet: ## go vet and a gofmt check
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }

clean: ## remove build output
	rm -rf $(BIN)
