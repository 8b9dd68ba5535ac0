/*
 * session-sidecar helper for Jakarta Servlet apps (Tomcat 10+, Servlet 6). One file; it needs
 * jackson-databind (with jackson-core and jackson-annotations) in WEB-INF/lib, or Debian's
 * libjackson2-databind-java. It ships in the npm package as clients/java/SessionSidecarFilter.java.
 *
 * An existing app keeps using request.getSession(): add the filter to web.xml, mapped before
 * every other filter and servlet that touches the session,
 *
 *     <filter>
 *       <filter-name>session-sidecar</filter-name>
 *       <filter-class>sessionsidecar.SessionSidecarFilter</filter-class>
 *     </filter>
 *     <filter-mapping>
 *       <filter-name>session-sidecar</filter-name>
 *       <url-pattern>/*</url-pattern>
 *     </filter-mapping>
 *
 * and compile it with the app:
 * javac -cp servlet-api.jar:jackson-databind.jar:jackson-core.jar -d WEB-INF/classes SessionSidecarFilter.java
 *
 * The sidecar hands the app the session in request headers (X-Session-Id, X-Session: base64url
 * JSON, X-Session-Unavailable: 1). request.getSession() returns an HttpSession whose attributes
 * are that JSON object's members, and just before the response is committed (its first byte of
 * body, flushBuffer, sendRedirect, sendError, or the end of the filter chain) the smallest
 * X-Session-Merge for what the request changed goes back (RFC 7396: changed and added
 * attributes, null for removed ones, nested maps member by member, lists whole), nothing when
 * nothing changed. Values changed in place (a Map the app got and put into) count. A change
 * made after the body has begun is not sent, nor one made by a request whose chain threw.
 *
 * - session.invalidate() (a logout) sends X-Session-Destroy: the session ends everywhere. A
 *   session created after it in the same request and given attributes goes out instead as the
 *   new data under a new key (X-Session-Set with X-Session-Regenerate; the old key still ends).
 * - request.changeSessionId() (after a login, against session fixation) sends
 *   X-Session-Regenerate: a new key, same data. It returns the current key: the sidecar mints
 *   the new one, which the app sees as X-Session-Id on the next request.
 * - No session (no X-Session-Id): getSession(false) is null, getSession() a new empty one (its
 *   getId() is "" until the sidecar has stored it, which it does once it holds an attribute).
 * - X-Session-Unavailable: 1 (the client has a session memcached could not produce in time):
 *   the session reads empty and isUnavailable(request) is true. Do not treat the user as logged
 *   out. The sidecar refuses a change then unless it comes with changeSessionId() (a login),
 *   which the filter sends as X-Session-Set of the whole data.
 *
 * Attribute values must be what JSON holds: String, Boolean, Integer, Long, Short, Byte,
 * BigInteger, Double and Float (finite), BigDecimal, Map with String keys, List, and null inside
 * a Map or List, nested as deep as you like. setAttribute refuses anything else (a bean, a
 * Date, an array, a Set) with an IllegalArgumentException that names the attribute and the
 * class, instead of storing what would come back as another type; a value put into a Map or
 * List in place is checked when the response starts (IllegalStateException, nothing sent).
 * They come back as Jackson reads JSON: maps as LinkedHashMap, lists as ArrayList, whole
 * numbers as Integer when they fit (else Long, BigInteger), decimals as Double, so read numbers
 * as ((Number) value).intValue(). setAttribute(name, null) removes the attribute, as the
 * servlet API says.
 *
 * Not covered: HttpSessionListener, HttpSessionAttributeListener and HttpSessionBindingListener
 * are not called; setMaxInactiveInterval changes nothing (the sidecar's session.idleTimeout
 * rules; init-param idleTimeout, default 1800, is what getMaxInactiveInterval reports);
 * getCreationTime and getLastAccessedTime are the request's start; an async request's changes
 * go out only at its first byte of body or flush; Tomcat's own session (JSESSIONID) is never
 * created through the wrapped request, so container-managed FORM login, which keeps its state
 * there, is not backed by the sidecar. Each request has its own copy of the session: two at
 * once that change different attributes both keep their change (the sidecar merges).
 * Init-param headerPrefix: the sidecar's session.headerPrefix if it is not X-Session.
 */
package sessionsidecar;

import com.fasterxml.jackson.databind.ObjectMapper;
import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.FilterConfig;
import jakarta.servlet.ServletContext;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletOutputStream;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.WriteListener;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletRequestWrapper;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpServletResponseWrapper;
import jakarta.servlet.http.HttpSession;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.Writer;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.Enumeration;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

public final class SessionSidecarFilter implements Filter {
    /** The request attribute that holds Boolean.TRUE when the session is unavailable. */
    public static final String UNAVAILABLE = "sessionsidecar.unavailable";
    private static final String STATE = "sessionsidecar.state";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Base64.Encoder B64 = Base64.getUrlEncoder().withoutPadding();

    private String prefix = "X-Session";
    private int idleTimeout = 1800;

    @Override
    public void init(FilterConfig config) throws ServletException {
        String p = config.getInitParameter("headerPrefix");
        if (p != null && !p.isBlank()) prefix = p.trim();
        String t = config.getInitParameter("idleTimeout");
        if (t != null && !t.isBlank()) {
            try {
                idleTimeout = Integer.parseInt(t.trim());
            } catch (NumberFormatException e) {
                throw new ServletException("session-sidecar filter: init-param idleTimeout must be a whole number of seconds, not " + t);
            }
        }
    }

    /** True when the client has a session the sidecar could not load in time (X-Session-Unavailable: 1). */
    public static boolean isUnavailable(ServletRequest request) {
        return Boolean.TRUE.equals(request.getAttribute(UNAVAILABLE));
    }

    @Override
    public void doFilter(ServletRequest req, ServletResponse res, FilterChain chain) throws IOException, ServletException {
        // Once per request: a forward or include mapped to the filter too keeps the first wrapper.
        if (!(req instanceof HttpServletRequest http) || !(res instanceof HttpServletResponse httpRes) || req.getAttribute(STATE) != null) {
            chain.doFilter(req, res);
            return;
        }
        State state;
        try {
            state = new State(http, prefix, idleTimeout);
        } catch (IOException | RuntimeException e) {
            throw new ServletException(prefix + " is not a base64url JSON object", e);
        }
        http.setAttribute(STATE, state);
        if (state.unavailable) http.setAttribute(UNAVAILABLE, Boolean.TRUE);
        Request request = new Request(http, state);
        Response response = new Response(httpRes, state);
        chain.doFilter(request, response);
        if (!request.isAsyncStarted()) response.sendSession();
    }

    /** What the request brought and what the app did with it. */
    static final class State {
        final String prefix;
        final int idleTimeout;
        final long started = System.currentTimeMillis();
        final String id;
        final boolean unavailable;
        final Map<String, Object> original;
        /** The live session, or null (none yet, or invalidated). */
        Session session;
        boolean invalidated;
        boolean regenerate;
        boolean sent;

        State(HttpServletRequest request, String prefix, int idleTimeout) throws IOException {
            this.prefix = prefix;
            this.idleTimeout = idleTimeout;
            String raw = request.getHeader(prefix);
            String key = request.getHeader(prefix + "-Id");
            id = key == null || key.isBlank() ? null : key.trim();
            String u = request.getHeader(prefix + "-Unavailable");
            unavailable = u != null && u.trim().equals("1");
            original = decode(raw);
            if (id != null || unavailable || !original.isEmpty()) {
                session = new Session(this, decode(raw), false, request.getServletContext()); // a second copy: the app changes this one
            }
        }

        /** The response headers for what became of the session, in the order to send them. */
        Map<String, String> headers() {
            if (invalidated) {
                if (session == null || session.attributes.isEmpty()) return Map.of(prefix + "-Destroy", "1");
                // Ended and begun anew: the new data under a new key; Regenerate ends the old one.
                Map<String, String> headers = new LinkedHashMap<>();
                headers.put(prefix + "-Set", encode(json(session.attributes)));
                if (id != null || unavailable || regenerate) headers.put(prefix + "-Regenerate", "1");
                return headers;
            }
            if (session == null) return Map.of();
            return sessionHeaders(original, session.attributes, false, regenerate, unavailable, prefix);
        }
    }

    /**
     * The headers that tell the sidecar what became of a session, {@code original} being the
     * data the request brought and {@code current} what the app left (null: ended), as the
     * express helper computes them:
     * ended: Destroy alone; a login while the session could not be loaded: Set of the whole data
     * with Regenerate (the only change the sidecar accepts then); otherwise the minimal Merge, or
     * Set of the whole data when a merge patch cannot say it (a member set to null, which a patch
     * reads as "delete"); Regenerate when asked.
     */
    public static Map<String, String> sessionHeaders(Map<String, Object> original, Map<String, Object> current, boolean destroy, boolean regenerate, boolean unavailable, String prefix) {
        Map<String, String> headers = new LinkedHashMap<>();
        if (destroy || current == null) {
            headers.put(prefix + "-Destroy", "1");
            return headers;
        }
        Map<String, Object> data = json(current);
        Map<String, Object> patch = regenerate && unavailable ? null : mergeDiff(original, data);
        if (patch == null) headers.put(prefix + "-Set", encode(data));
        else if (!patch.isEmpty()) headers.put(prefix + "-Merge", encode(patch));
        if (regenerate) headers.put(prefix + "-Regenerate", "1");
        return headers;
    }

    /**
     * The smallest RFC 7396 merge patch that turns {@code from} into {@code to}: changed and
     * added members, null for removed ones, nested maps diffed member by member, anything else
     * (lists included) replaced whole. Empty when they are equal; null when no patch can say it
     * (a member set to null, or null inside an added map: a patch reads null as "delete").
     */
    public static Map<String, Object> mergeDiff(Map<String, Object> from, Map<String, Object> to) {
        Map<String, Object> patch = new LinkedHashMap<>();
        for (String name : from.keySet()) {
            if (!to.containsKey(name)) patch.put(name, null);
        }
        for (Map.Entry<String, Object> member : to.entrySet()) {
            String name = member.getKey();
            Object value = member.getValue();
            boolean had = from.containsKey(name);
            Object before = from.get(name);
            if (had && same(before, value)) continue;
            if (had && before instanceof Map && value instanceof Map) {
                Map<String, Object> inner = mergeDiff(object(before), object(value));
                if (inner == null) return null;
                patch.put(name, inner);
            } else if (holdsNull(value)) {
                return null;
            } else {
                patch.put(name, value);
            }
        }
        return patch;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Object value) {
        return (Map<String, Object>) value;
    }

    private static boolean holdsNull(Object value) {
        if (value == null) return true;
        return value instanceof Map<?, ?> map && map.values().stream().anyMatch(SessionSidecarFilter::holdsNull);
    }

    /** JSON equality: maps by members in any order, lists by position, 1 and 1.0 differ (they read back as Integer and Double). */
    static boolean same(Object a, Object b) {
        if (a == b) return true;
        if (a == null || b == null) return false;
        if (a instanceof Map<?, ?> x && b instanceof Map<?, ?> y) {
            if (x.size() != y.size()) return false;
            for (Map.Entry<?, ?> e : x.entrySet()) {
                if (!y.containsKey(e.getKey()) || !same(e.getValue(), y.get(e.getKey()))) return false;
            }
            return true;
        }
        if (a instanceof List<?> x && b instanceof List<?> y) {
            if (x.size() != y.size()) return false;
            for (int i = 0; i < x.size(); i++) {
                if (!same(x.get(i), y.get(i))) return false;
            }
            return true;
        }
        if (a instanceof Number x && b instanceof Number y) {
            if (whole(x) && whole(y)) return new BigInteger(x.toString()).equals(new BigInteger(y.toString()));
            if (!whole(x) && !whole(y)) return new BigDecimal(x.toString()).compareTo(new BigDecimal(y.toString())) == 0;
            return false;
        }
        return a.equals(b);
    }

    private static boolean whole(Number n) {
        return n instanceof Integer || n instanceof Long || n instanceof Short || n instanceof Byte || n instanceof BigInteger;
    }

    /**
     * Throws IllegalArgumentException unless {@code value} is what JSON holds (see the top of
     * this file); {@code path} names it in the message.
     */
    static void checkJson(Object value, String path, Set<Object> open) {
        if (value == null || value instanceof String || value instanceof Boolean || value instanceof BigDecimal) return;
        if (value instanceof Number n && whole(n)) return;
        if (value instanceof Double || value instanceof Float) {
            if (Double.isFinite(((Number) value).doubleValue())) return;
            throw new IllegalArgumentException("session attribute " + path + " is " + value + ", which JSON cannot hold");
        }
        if (value instanceof Map<?, ?> || value instanceof List<?>) {
            if (!open.add(value)) throw new IllegalArgumentException("session attribute " + path + " contains itself");
            if (value instanceof Map<?, ?> map) {
                for (Map.Entry<?, ?> e : map.entrySet()) {
                    if (!(e.getKey() instanceof String name)) {
                        throw new IllegalArgumentException("session attribute " + path + " has a key that is not a String (" + className(e.getKey()) + "): JSON object members are named by strings");
                    }
                    checkJson(e.getValue(), path + "." + name, open);
                }
            } else {
                int i = 0;
                for (Object item : (List<?>) value) checkJson(item, path + "[" + i++ + "]", open);
            }
            open.remove(value);
            return;
        }
        throw new IllegalArgumentException("session attribute " + path + " is a " + className(value)
            + ", which the sidecar cannot keep: store what JSON holds (String, Boolean, Integer, Long, Double, BigDecimal, BigInteger, Map<String, ?>, List)");
    }

    private static String className(Object value) {
        return value == null ? "null" : value.getClass().getName();
    }

    /** The session as JSON keeps it, checked: every attribute must still be JSON (values change in place). */
    static Map<String, Object> json(Map<String, Object> attributes) {
        for (Map.Entry<String, Object> e : attributes.entrySet()) {
            try {
                checkJson(e.getValue(), "\"" + e.getKey() + "\"", Collections.newSetFromMap(new IdentityHashMap<>()));
            } catch (IllegalArgumentException err) {
                throw new IllegalStateException(err.getMessage() + " (changed in place); no session change is sent", err);
            }
        }
        return attributes;
    }

    static Map<String, Object> decode(String raw) throws IOException {
        if (raw == null || raw.isBlank()) return new LinkedHashMap<>();
        Object value = JSON.readValue(Base64.getUrlDecoder().decode(raw.trim()), Object.class);
        if (!(value instanceof Map)) throw new IOException("not a JSON object");
        return object(value);
    }

    static String encode(Map<String, Object> value) {
        try {
            return B64.encodeToString(JSON.writeValueAsBytes(value));
        } catch (IOException e) {
            throw new IllegalStateException("session data could not be written as JSON", e);
        }
    }

    /** The HttpSession the app gets: attributes are the JSON object's members. */
    static final class Session implements HttpSession {
        private final State state;
        final Map<String, Object> attributes;
        private final boolean isNew;
        private final ServletContext context;
        private int maxInactiveInterval;
        private boolean valid = true;

        Session(State state, Map<String, Object> attributes, boolean isNew, ServletContext context) {
            this.state = state;
            this.attributes = attributes;
            this.isNew = isNew;
            this.context = context;
            this.maxInactiveInterval = state.idleTimeout;
        }

        private void check() {
            if (!valid) throw new IllegalStateException("the session was invalidated");
        }

        @Override
        public String getId() {
            check();
            return isNew || state.invalidated || state.id == null ? "" : state.id;
        }

        @Override
        public long getCreationTime() {
            check();
            return state.started;
        }

        @Override
        public long getLastAccessedTime() {
            check();
            return state.started;
        }

        @Override
        public ServletContext getServletContext() {
            return context;
        }

        @Override
        public void setMaxInactiveInterval(int interval) {
            maxInactiveInterval = interval;
        }

        @Override
        public int getMaxInactiveInterval() {
            return maxInactiveInterval;
        }

        @Override
        public Object getAttribute(String name) {
            check();
            return attributes.get(name);
        }

        @Override
        public Enumeration<String> getAttributeNames() {
            check();
            return Collections.enumeration(new ArrayList<>(attributes.keySet()));
        }

        @Override
        public void setAttribute(String name, Object value) {
            check();
            if (name == null) throw new IllegalArgumentException("session attribute name is null");
            if (value == null) {
                attributes.remove(name);
                return;
            }
            checkJson(value, "\"" + name + "\"", Collections.newSetFromMap(new IdentityHashMap<>()));
            attributes.put(name, value);
        }

        @Override
        public void removeAttribute(String name) {
            check();
            attributes.remove(name);
        }

        @Override
        public void invalidate() {
            check();
            valid = false;
            state.invalidated = true;
            if (state.session == this) state.session = null;
        }

        @Override
        public boolean isNew() {
            check();
            return isNew;
        }
    }

    /** The request the app gets: its session is the sidecar's, never Tomcat's own. */
    static final class Request extends HttpServletRequestWrapper {
        private final State state;

        Request(HttpServletRequest request, State state) {
            super(request);
            this.state = state;
        }

        @Override
        public HttpSession getSession(boolean create) {
            if (state.session == null && create) state.session = new Session(state, new LinkedHashMap<>(), true, getServletContext());
            return state.session;
        }

        @Override
        public HttpSession getSession() {
            return getSession(true);
        }

        @Override
        public String changeSessionId() {
            if (state.session == null) throw new IllegalStateException("no session to change the id of");
            state.regenerate = true;
            return state.session.getId();
        }

        @Override
        public String getRequestedSessionId() {
            return state.id;
        }

        @Override
        public boolean isRequestedSessionIdValid() {
            return state.id != null && !state.invalidated;
        }

        @Override
        public boolean isRequestedSessionIdFromCookie() {
            return state.id != null; // the sidecar's cookie
        }

        @Override
        public boolean isRequestedSessionIdFromURL() {
            return false;
        }
    }

    /** The response the app gets: the session's headers go out just before it is committed. */
    static final class Response extends HttpServletResponseWrapper {
        private final State state;
        private ServletOutputStream stream;
        private PrintWriter writer;

        Response(HttpServletResponse response, State state) {
            super(response);
            this.state = state;
        }

        /** Adds the session's headers once, unless the response is already committed. */
        void sendSession() {
            if (state.sent) return;
            state.sent = true;
            if (isCommitted()) return;
            for (Map.Entry<String, String> h : state.headers().entrySet()) setHeader(h.getKey(), h.getValue());
        }

        @Override
        public void flushBuffer() throws IOException {
            sendSession();
            super.flushBuffer();
        }

        @Override
        public void sendRedirect(String location) throws IOException {
            sendSession();
            super.sendRedirect(location);
        }

        @Override
        public void sendError(int status) throws IOException {
            sendSession();
            super.sendError(status);
        }

        @Override
        public void sendError(int status, String message) throws IOException {
            sendSession();
            super.sendError(status, message);
        }

        @Override
        public void reset() {
            super.reset(); // clears the headers, ours too: they go out again at the next commit
            state.sent = false;
        }

        @Override
        public ServletOutputStream getOutputStream() throws IOException {
            if (stream == null) stream = new Stream(super.getOutputStream(), this);
            return stream;
        }

        @Override
        public PrintWriter getWriter() throws IOException {
            if (writer == null) {
                PrintWriter inner = super.getWriter();
                writer = new PrintWriter(new HookWriter(inner, this)) {
                    @Override
                    public boolean checkError() {
                        return super.checkError() || inner.checkError();
                    }
                };
            }
            return writer;
        }
    }

    /** The response body as bytes: the first write, flush or close sends the session first. */
    static final class Stream extends ServletOutputStream {
        private final ServletOutputStream inner;
        private final Response response;

        Stream(ServletOutputStream inner, Response response) {
            this.inner = inner;
            this.response = response;
        }

        @Override
        public void write(int b) throws IOException {
            response.sendSession();
            inner.write(b);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            response.sendSession();
            inner.write(b, off, len);
        }

        @Override
        public void flush() throws IOException {
            response.sendSession();
            inner.flush();
        }

        @Override
        public void close() throws IOException {
            response.sendSession();
            inner.close();
        }

        @Override
        public boolean isReady() {
            return inner.isReady();
        }

        @Override
        public void setWriteListener(WriteListener listener) {
            inner.setWriteListener(listener);
        }
    }

    /** The response body as characters: every PrintWriter call lands here, after the session. */
    static final class HookWriter extends Writer {
        private final PrintWriter inner;
        private final Response response;

        HookWriter(PrintWriter inner, Response response) {
            this.inner = inner;
            this.response = response;
        }

        @Override
        public void write(char[] buf, int off, int len) {
            response.sendSession();
            inner.write(buf, off, len);
        }

        @Override
        public void write(String s, int off, int len) {
            response.sendSession();
            inner.write(s, off, len);
        }

        @Override
        public void flush() {
            response.sendSession();
            inner.flush();
        }

        @Override
        public void close() {
            response.sendSession();
            inner.close();
        }
    }
}
