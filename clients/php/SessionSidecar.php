<?php
// session-sidecar helper for PHP apps. One file, no dependencies (PHP 8): copy it next to your
// app (it ships in the npm package as clients/php/SessionSidecar.php).
//
//     require __DIR__ . '/SessionSidecar.php';
//     SessionSidecar::start();                  // instead of session_start(): fills $_SESSION
//     $_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;
//     SessionSidecar::regenerate();             // after a login: new key, same data
//     SessionSidecar::destroy();                // a logout: the session ends everywhere
//     SessionSidecar::id(), SessionSidecar::unavailable()
//
// $_SESSION is filled from the sidecar's request headers (X-Session: base64url JSON), and just
// before PHP sends the response headers (header_register_callback) the smallest
// X-Session-Merge for what the script changed in it goes out (RFC 7396: changed and added
// members, null for removed ones, nested objects member by member, lists whole); nothing when
// nothing changed; a change made after the first output has sent the headers is not sent.
// PHP allows one header callback: if the app registers its own, call
// SessionSidecar::sendHeaders() from it (or before the first output).
//
// JSON objects arrive as PHP arrays, so `{}` and `[]` both read as `[]` (and `{"0":"a"}` as a
// list): an array whose keys are those of the object that member was stays an object, the
// session itself is always an object, and an empty array the script adds is sent as `[]` (use
// `new stdClass` for an empty object).

final class SessionSidecar
{
    private static string $prefix = 'X-Session';
    private static ?stdClass $original = null;
    private static ?string $id = null;
    private static bool $unavailable = false;
    private static bool $destroyed = false;
    private static bool $regenerated = false;
    private static bool $sent = false;

    /** Reads the session into $_SESSION and arranges for its changes to be sent. */
    public static function start(string $headerPrefix = 'X-Session'): void
    {
        self::$prefix = $headerPrefix;
        $server = 'HTTP_' . strtoupper(str_replace('-', '_', $headerPrefix));
        $raw = $_SERVER[$server] ?? '';
        $json = $raw === '' ? '{}' : base64_decode(strtr($raw, '-_', '+/'), true);
        $original = $json === false ? null : json_decode($json, false);
        if (!$original instanceof stdClass) throw new UnexpectedValueException('X-Session is not a base64url JSON object');
        self::$original = $original;
        self::$id = ($_SERVER[$server . '_ID'] ?? '') === '' ? null : $_SERVER[$server . '_ID'];
        self::$unavailable = trim($_SERVER[$server . '_UNAVAILABLE'] ?? '') === '1';
        self::$destroyed = self::$regenerated = self::$sent = false;
        $GLOBALS['_SESSION'] = json_decode($json, true);
        header_register_callback([self::class, 'sendHeaders']);
    }

    /** The session key (X-Session-Id), or null when there is no session yet. */
    public static function id(): ?string { return self::$id; }

    /**
     * True when the client has a session memcached could not produce in time: $_SESSION is
     * empty, do not treat the user as logged out; only a login (regenerate()) may change it.
     */
    public static function unavailable(): bool { return self::$unavailable; }

    /** Ends the session everywhere (X-Session-Destroy: 1): the sidecar clears the cookie. */
    public static function destroy(): void { self::$destroyed = true; }

    /** A new session key, same data (X-Session-Regenerate: 1): call it after a login. */
    public static function regenerate(): void { self::$regenerated = true; }

    /** Sends the session's headers now (once); the header callback calls it. */
    public static function sendHeaders(): void
    {
        if (self::$sent || self::$original === null) return;
        self::$sent = true;
        foreach (self::headers() as $name => $value) header("$name: $value");
    }

    /**
     * The headers that say what became of the session: Destroy alone when it ended; Set of the
     * whole data with Regenerate for a login while the session could not be loaded (the only
     * change the sidecar accepts then); otherwise the minimal Merge (Set of the whole data when
     * a patch cannot say it: a member set to null, which a patch reads as "delete"), and
     * Regenerate when asked.
     */
    public static function headers(): array
    {
        $p = self::$prefix;
        $session = $GLOBALS['_SESSION'] ?? null;
        if (self::$destroyed || !is_array($session)) return ["$p-Destroy" => '1'];
        $data = self::typed($session, self::$original);
        // The session is always an object: a list at the top (`$_SESSION[0] = ...` on an empty
        // session) keeps its indexes as member names.
        if (!$data instanceof stdClass) $data = (object) $data;
        $patch = self::$regenerated && self::$unavailable ? null : self::diff(self::$original, $data);
        $headers = [];
        if ($patch === null) $headers["$p-Set"] = self::b64($data);
        elseif (get_object_vars($patch) !== []) $headers["$p-Merge"] = self::b64($patch);
        if (self::$regenerated) $headers["$p-Regenerate"] = '1';
        return $headers;
    }

    /**
     * The smallest RFC 7396 merge patch turning $from into $to (JSON trees: stdClass objects,
     * list arrays), or null when no patch can say it (a null that is data, not a deletion).
     */
    public static function diff(stdClass $from, stdClass $to): ?stdClass
    {
        $patch = new stdClass();
        foreach (get_object_vars($from) as $name => $_) {
            if (!property_exists($to, (string) $name)) $patch->{$name} = null;
        }
        foreach (get_object_vars($to) as $name => $value) {
            $had = property_exists($from, (string) $name);
            if ($had && self::same($from->{$name}, $value)) continue;
            if ($had && $from->{$name} instanceof stdClass && $value instanceof stdClass) {
                $inner = self::diff($from->{$name}, $value);
                if ($inner === null) return null;
                $patch->{$name} = $inner;
            } elseif (self::holdsNull($value)) {
                return null;
            } else {
                $patch->{$name} = $value;
            }
        }
        return $patch;
    }

    /**
     * A PHP value as a JSON tree, told apart by what it was: an array is an object when it has
     * keys a list has not, or when that member was an object before (`{}` decodes as `[]`).
     */
    private static function typed(mixed $value, mixed $was): mixed
    {
        if (is_array($value)) {
            $isList = $value === [] || array_keys($value) === range(0, count($value) - 1);
            if ($isList && !($was instanceof stdClass && ($value === [] || self::sameKeys($value, $was)))) {
                return array_map(fn ($v, $i) => self::typed($v, is_array($was) ? ($was[$i] ?? null) : null), $value, array_keys($value));
            }
            $object = new stdClass();
            foreach ($value as $k => $v) {
                $object->{$k} = self::typed($v, $was instanceof stdClass && property_exists($was, (string) $k) ? $was->{$k} : null);
            }
            return $object;
        }
        if (is_object($value)) return json_decode(self::json($value), false);
        return $value;
    }

    /** True when an array's keys are an object's member names (`{"0":"a"}` decodes as a list). */
    private static function sameKeys(array $value, stdClass $object): bool
    {
        $a = array_map('strval', array_keys($value));
        $b = array_map('strval', array_keys(get_object_vars($object)));
        sort($a);
        sort($b);
        return $a === $b;
    }

    /** JSON equality: objects by members in any order, lists by position, 1 == 1.0, '1' != 1. */
    private static function same(mixed $a, mixed $b): bool
    {
        if ($a instanceof stdClass && $b instanceof stdClass) {
            $av = get_object_vars($a);
            $bv = get_object_vars($b);
            if (count($av) !== count($bv)) return false;
            foreach ($av as $k => $v) {
                if (!array_key_exists($k, $bv) || !self::same($v, $bv[$k])) return false;
            }
            return true;
        }
        if (is_array($a) && is_array($b)) {
            if (count($a) !== count($b)) return false;
            foreach ($a as $i => $v) {
                if (!self::same($v, $b[$i])) return false;
            }
            return true;
        }
        if ((is_int($a) || is_float($a)) && (is_int($b) || is_float($b))) return $a == $b;
        return $a === $b;
    }

    private static function holdsNull(mixed $value): bool
    {
        if ($value === null) return true;
        if (!$value instanceof stdClass) return false;
        foreach (get_object_vars($value) as $v) {
            if (self::holdsNull($v)) return true;
        }
        return false;
    }

    private static function json(mixed $value): string
    {
        try {
            return json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR);
        } catch (JsonException $e) {
            $where = self::notUtf8($GLOBALS['_SESSION'] ?? null, '$_SESSION');
            if ($where === null) throw $e;
            // Bytes (random_bytes(), a hash's raw output) have no JSON form: say which member,
            // instead of json_encode's "Malformed UTF-8 characters" with no name.
            throw new UnexpectedValueException("SessionSidecar: $where is not UTF-8 text (raw bytes, such as random_bytes() returns?): a session is JSON, which cannot hold it; store bin2hex() or base64_encode() of it. The session was not changed.");
        }
    }

    /** The first string (or member name) in a value that is not valid UTF-8, as a PHP path. */
    private static function notUtf8(mixed $value, string $path): ?string
    {
        if (is_string($value)) return preg_match('//u', $value) === 1 ? null : $path;
        if (!is_array($value) && !is_object($value)) return null;
        foreach ((array) $value as $k => $v) {
            $name = is_int($k) ? "$path" . "[$k]" : $path . '[' . var_export($k, true) . ']';
            if (is_string($k) && preg_match('//u', $k) !== 1) return "a member name in $path";
            $found = self::notUtf8($v, $name);
            if ($found !== null) return $found;
        }
        return null;
    }

    private static function b64(stdClass $value): string
    {
        return rtrim(strtr(base64_encode(self::json($value)), '+/', '-_'), '=');
    }
}
