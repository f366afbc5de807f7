#!/bin/sh
# ApplicationStart: start the new version.
set -eu
echo "[$LIFECYCLE_EVENT] starting hello-web"
"@INSTALL_ROOT@/var/www/hello-web/bin/hello-web" start
