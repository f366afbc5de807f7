# Packages of the agent for operators (see packaging/README.md):
#
#   make deb [CA_CHAIN=chain.pem] [PACKAGE_VERSION=x.y.z] [PROFILE=release]
#   make rpm [CA_CHAIN=chain.pem] [PACKAGE_VERSION=x.y.z] [PROFILE=release]
#   make check-packages      what CI runs, on the dev-profile glibc 2.17 build
#
# Packages land in target/packages/. The agent in them is built for glibc 2.17
# with cargo-zigbuild (packaging/glibc-floor; scripts/setup installs it). CA_CHAIN
# ships the deployment-spec signer CA chain; without it the agent refuses to
# start until the file is provided.

PROFILE ?= release
CA_CHAIN ?=
PACKAGE_VERSION ?=
OUT ?= target/packages

BUILD_ARGS = --profile $(PROFILE) --out $(OUT) \
	$(if $(CA_CHAIN),--ca-chain $(CA_CHAIN)) $(if $(PACKAGE_VERSION),--version $(PACKAGE_VERSION))

.PHONY: deb rpm packages check-packages

deb:
	packaging/build deb $(BUILD_ARGS)

rpm:
	packaging/build rpm $(BUILD_ARGS)

packages: deb rpm

check-packages:
	bash -c '. packaging/glibc-floor && dir=$$(glibc_floor_build dev codedeploy-agent codedeploy-local) && PACKAGE_AGENT_BINARY=$$dir/codedeploy-agent packaging/check'
