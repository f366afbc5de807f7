#!/bin/sh
# ApplicationStop: runs from the previously installed revision.
set -eu
BIN="@INSTALL_ROOT@/var/www/hello-web/bin/hello-web"
echo "[$LIFECYCLE_EVENT] stopping hello-web before deployment $DEPLOYMENT_ID"
if [ -x "$BIN" ]; then
  "$BIN" stop
else
  echo "hello-web is not installed yet; nothing to stop"
fi
