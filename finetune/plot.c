#include "finetune/plot.h"

#include <math.h>
#include <string.h>

#include "util/json.h"

static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

int plot_svg(const char *path, const char *title, const plot_series *s, int ns, oh_err *err) {
    const double W = 720, H = 420, L = 70, R = 20, T = 40, B = 50;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i])) continue;
            x0 = fmin(x0, s[k].x[i]); x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i]); y1 = fmax(y1, s[k].y[i]);
        }
    if (!isfinite(x0)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) { y1 = y0 + 0.5; y0 -= 0.5; }
    double pad = 0.05 * (y1 - y0);
    y0 -= pad; y1 += pad;
    if (y0 < 0 && y0 + pad >= 0) y0 = 0;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v) - y0) / (y1 - y0) * (H - T - B))
    oh_buf b = {0};
    oh_buf_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                      "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    oh_buf_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    oh_buf_puts(&b, "<text x=\"360\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">");
    for (const char *c = title; *c; c++) {
        if (*c == '<') oh_buf_puts(&b, "&lt;");
        else if (*c == '&') oh_buf_puts(&b, "&amp;");
        else oh_buf_put(&b, c, 1);
    }
    oh_buf_puts(&b, "</text>\n");
    double ys = nice_step(y1 - y0, 6), xs = nice_step(x1 - x0, 8);
    for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-12; v += ys) {
        oh_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, PY(v), W - R, PY(v));
        oh_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 6, PY(v) + 4, fabs(v) < 1e-12 ? 0 : v);
    }
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-12; v += xs) {
        oh_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", PX(v), T, PX(v), H - B);
        oh_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(v), H - B + 16, v);
    }
    oh_buf_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", L, T,
                  W - L - R, H - T - B);
    oh_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">optimizer step</text>\n", (L + W - R) / 2, H - 12);
    oh_buf_printf(&b, "<text transform=\"translate(16,%.1f) rotate(-90)\" text-anchor=\"middle\">loss</text>\n", (T + H - B) / 2);
    for (int k = 0; k < ns; k++) {
        if (s[k].n == 0) continue;
        if (s[k].n == 1) {
            oh_buf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s[k].x[0]), PY(s[k].y[0]), s[k].color);
        } else {
            oh_buf_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", s[k].color);
            for (int i = 0; i < s[k].n; i++)
                if (isfinite(s[k].y[i])) oh_buf_printf(&b, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
            oh_buf_puts(&b, "\"/>\n");
        }
        oh_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                      W - R - 150, T + 16 + 18.0 * k, W - R - 125, T + 16 + 18.0 * k, s[k].color);
        oh_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", W - R - 118, T + 20 + 18.0 * k, s[k].label);
    }
    oh_buf_puts(&b, "</svg>\n");
#undef PX
#undef PY
    int rc = oh_write_file_atomic(path, b.p, b.n, err);
    oh_buf_free(&b);
    return rc;
}
