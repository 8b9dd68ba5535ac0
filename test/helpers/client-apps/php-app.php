<?php // The client helpers' test app, PHP with SessionSidecar.php (test/e2e/client-helpers.test.ts).
// Every route answers with what it saw: { session, id, unavailable }.
require __DIR__ . '/SessionSidecar.php';
SessionSidecar::start();
$seen = json_encode(['session' => (object) $_SESSION, 'id' => SessionSidecar::id(), 'unavailable' => SessionSidecar::unavailable()]);
switch (parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH)) {
case '/visit':
    $_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;
    break;
case '/login':
    $_SESSION['user'] = $_GET['user'];
    $_SESSION['prefs'] = ['theme' => 'light', 'lang' => 'en'];
    SessionSidecar::regenerate();
    break;
case '/theme':
    $_SESSION['prefs']['theme'] = $_GET['theme'];
    break;
case '/forget':
    unset($_SESSION['visits']);
    break;
case '/note':
    $_SESSION['note'] = null;
    break;
case '/reset':
    $_SESSION = [];
    SessionSidecar::regenerate();
    break;
case '/logout':
    SessionSidecar::destroy();
    break;
}
header('Content-Type: application/json');
echo $seen;
