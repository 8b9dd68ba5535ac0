// The Java filter's test app (test/e2e/java-filter.test.ts): a servlet that uses
// request.getSession() as any Tomcat app does, behind clients/java/SessionSidecarFilter.java
// (mapped in web.xml). Every route answers with what it saw before it changed anything:
// { session, id, unavailable, tomcatSession } (tomcatSession: whether Tomcat's own session
// exists, which the filter never creates).
import com.fasterxml.jackson.databind.ObjectMapper;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletRequestWrapper;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpSession;
import java.io.IOException;
import java.io.PrintWriter;
import java.util.Collections;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import sessionsidecar.SessionSidecarFilter;

public class SessionApp extends HttpServlet {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Override
    @SuppressWarnings("unchecked")
    protected void doGet(HttpServletRequest req, HttpServletResponse res) throws IOException {
        Map<String, Object> seen = seen(req);
        res.setContentType("application/json");
        // Taken before the session changes, as servlets often do: the headers go at the first write.
        PrintWriter out = res.getWriter();
        switch (req.getRequestURI()) {
            case "/show" -> { }
            case "/visit" -> {
                HttpSession s = req.getSession();
                Object visits = s.getAttribute("visits");
                s.setAttribute("visits", (visits == null ? 0 : ((Number) visits).intValue()) + 1);
            }
            case "/login" -> {
                HttpSession s = req.getSession();
                s.setAttribute("user", req.getParameter("user"));
                Map<String, Object> prefs = new LinkedHashMap<>();
                prefs.put("theme", "light");
                prefs.put("lang", "en");
                s.setAttribute("prefs", prefs);
                req.changeSessionId();
            }
            case "/theme" -> ((Map<String, Object>) req.getSession().getAttribute("prefs")).put("theme", req.getParameter("theme"));
            case "/forget" -> req.getSession().removeAttribute("visits");
            case "/cart" -> req.getSession().setAttribute("cart", List.of("tea", Map.of("item", "cup", "n", 2)));
            case "/refuse" -> {
                try {
                    req.getSession().setAttribute("since", new Date());
                } catch (IllegalArgumentException e) {
                    seen.put("refused", e.getMessage());
                }
            }
            case "/late" -> {
                out.write(JSON.writeValueAsString(seen));
                out.flush();
                req.getSession().setAttribute("late", true); // the headers are gone: not sent
                return;
            }
            case "/reset" -> {
                HttpSession s = req.getSession();
                for (String name : Collections.list(s.getAttributeNames())) s.removeAttribute(name);
                req.changeSessionId();
            }
            case "/relogin" -> {
                HttpSession old = req.getSession(false);
                if (old != null) old.invalidate();
                req.getSession().setAttribute("user", req.getParameter("user"));
            }
            case "/logout" -> {
                HttpSession s = req.getSession(false);
                if (s != null) s.invalidate();
                res.sendRedirect("/show");
                return;
            }
            default -> {
                res.sendError(404);
                return;
            }
        }
        out.write(JSON.writeValueAsString(seen));
    }

    private static Map<String, Object> seen(HttpServletRequest req) throws IOException {
        HttpSession s = req.getSession(false);
        Map<String, Object> session = new LinkedHashMap<>();
        if (s != null) for (String name : Collections.list(s.getAttributeNames())) session.put(name, s.getAttribute(name));
        Map<String, Object> seen = new LinkedHashMap<>();
        // A deep copy: what the route changes in place later must not show here.
        seen.put("session", JSON.readValue(JSON.writeValueAsString(session), Map.class));
        seen.put("id", req.getRequestedSessionId());
        seen.put("unavailable", SessionSidecarFilter.isUnavailable(req));
        seen.put("tomcatSession", req instanceof HttpServletRequestWrapper w && w.getRequest() instanceof HttpServletRequest inner && inner.getSession(false) != null);
        return seen;
    }
}
