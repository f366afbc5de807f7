#!/bin/sh
# ValidateService: fail the deployment unless the application is healthy.
set -eu
echo "[$LIFECYCLE_EVENT] checking hello-web"
"@INSTALL_ROOT@/var/www/hello-web/bin/hello-web" status
grep -q "Hello from hello-web" "@INSTALL_ROOT@/var/www/hello-web/index.html"
echo "hello-web is healthy"
