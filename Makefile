# debship: the usual entry points.  Each target is one of the scripts in tools/.
#
#   make setup    install debship into ./.venv and build the sample into dist/
#   make test     install the test dependencies and run the whole suite (as root, via sudo)
#   make test-vm  only the qemu scenario (tests/vm, ~10 min under TCG)
#   make demo     build the sample, boot a local Debian 12 guest under qemu, ship to it
#   make deb-self debship itself as a Debian package: dist/python3-debship_<version>-1_all.deb (stdeb)
#
# Extra pytest arguments: make test ARGS="-k lifecycle"; demo options: make demo ARGS=--keep

ARGS ?=

.PHONY: setup test test-vm demo deb-self

setup:
	bash tools/setup.sh

test:
	bash tools/test.sh $(ARGS)

test-vm:
	bash tools/test.sh -s tests/vm $(ARGS)

demo:
	bash tools/demo.sh $(ARGS)

deb-self:
	bash tools/deb-self.sh
