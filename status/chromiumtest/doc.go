// Package chromiumtest tests the status page (package status) in a real browser: headless
// Chromium, driven with chromedp, against clusters of real nodes on 127.0.0.1. It is a module of
// its own so that the core module does not depend on chromedp. The tests skip when Chromium is not
// installed (Debian's chromium package; test.sh installs it when it runs as root).
//
// docs/status-page.png, the README's picture of the page, is a node of examples/cluster -serve:
//
//	chromium --headless --no-sandbox --hide-scrollbars --window-size=1500,1080 --screenshot=docs/status-page.png URL
package chromiumtest
