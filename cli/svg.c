/* Grouped bar charts (svg.h). Layout in pixels: a left margin for the y
 * axis, groups side by side, bars within a group side by side. */
#include "svg.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#define W_PLOT_MIN 480
#define BAR_W 26
#define GROUP_GAP 22
#define H_PLOT 300
#define M_LEFT 70
#define M_RIGHT 20
#define M_TOP 56
#define M_BOTTOM 130

static const char *const COLORS[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                     "#76b7b2", "#edc948", "#b07aa1", "#9c755f"};

/* Text safe for SVG (the few characters XML reserves). */
static void text(FILE *out, const char *s) {
    for (; s && *s; s++) {
        if (*s == '<')
            fputs("&lt;", out);
        else if (*s == '>')
            fputs("&gt;", out);
        else if (*s == '&')
            fputs("&amp;", out);
        else
            fputc(*s, out);
    }
}

/* A tick step of 1, 2 or 5 x 10^k giving about 5 ticks up to max. */
static double tick_step(double max) {
    double raw = max / 5, p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

const char *nm_svg_num(double v, char *buf, size_t n) {
    double a = fabs(v);
    snprintf(buf, n, a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : a >= 1 ? "%.2f" : "%.3g", v);
    return buf;
}

static bool has(const nm_svg_chart *c, int i) {
    return !isnan(c->median[i]) && c->median[i] >= 0;
}

static void axes(const nm_svg_chart *c, FILE *out, int w, double top, double step) {
    fprintf(out, "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", M_LEFT);
    text(out, c->title);
    fprintf(out, "</text>\n");
    for (double v = 0; v <= top + step / 2; v += step) {
        double y = M_TOP + H_PLOT - v / top * H_PLOT;
        fprintf(out,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n",
                M_LEFT, y, w - M_RIGHT, y, M_LEFT - 6, y + 4, v);
    }
    fprintf(out,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n"
            "<text transform=\"translate(18,%d) rotate(-90)\" font-size=\"12\" "
            "text-anchor=\"middle\">",
            M_LEFT, M_TOP + H_PLOT, w - M_RIGHT, M_TOP + H_PLOT, M_TOP + H_PLOT / 2);
    text(out, c->y_label);
    fprintf(out, "</text>\n");
}

static void legend(const nm_svg_chart *c, FILE *out) {
    int x = M_LEFT;
    for (int s = 0; s < c->n_series; s++) {
        fprintf(out,
                "<rect x=\"%d\" y=\"34\" width=\"12\" height=\"12\" fill=\"%s\"/>\n"
                "<text x=\"%d\" y=\"45\" font-size=\"12\">",
                x, COLORS[s % 8], x + 16);
        text(out, c->series[s]);
        fprintf(out, "</text>\n");
        x += 24 + 7 * (int)strlen(c->series[s]);
    }
}

void nm_svg_bars(const nm_svg_chart *c, FILE *out) {
    int group_w = c->n_series * BAR_W + GROUP_GAP;
    int plot_w = c->n_groups * group_w;
    if (plot_w < W_PLOT_MIN)
        plot_w = W_PLOT_MIN;
    int w = M_LEFT + plot_w + M_RIGHT, h = M_TOP + H_PLOT + M_BOTTOM;
    double max = 0;
    for (int i = 0; i < c->n_groups * c->n_series; i++)
        if (has(c, i))
            max = fmax(max, isnan(c->hi[i]) ? c->median[i] : fmax(c->median[i], c->hi[i]));
    double step = tick_step(max > 0 ? max : 1), top = ceil((max > 0 ? max : 1) / step) * step;
    fprintf(out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            w, h, w, h);
    axes(c, out, w, top, step);
    legend(c, out);
    int x0 = M_LEFT + (plot_w - c->n_groups * group_w) / 2 + GROUP_GAP / 2;
    for (int g = 0; g < c->n_groups; g++) {
        int gx = x0 + g * group_w;
        for (int s = 0; s < c->n_series; s++) {
            int i = g * c->n_series + s, x = gx + s * BAR_W;
            if (!has(c, i))
                continue;
            double y = M_TOP + H_PLOT - c->median[i] / top * H_PLOT;
            fprintf(out,
                    "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\">"
                    "<title>%.3g</title></rect>\n",
                    x + 2, y, BAR_W - 4, M_TOP + H_PLOT - y, COLORS[s % 8], c->median[i]);
            if (!isnan(c->lo[i]) && !isnan(c->hi[i]) && c->hi[i] > c->lo[i]) {
                double y1 = M_TOP + H_PLOT - c->lo[i] / top * H_PLOT;
                double y2 = M_TOP + H_PLOT - c->hi[i] / top * H_PLOT;
                int cx = x + BAR_W / 2;
                fprintf(out,
                        "<path d=\"M%d %.1fV%.1fM%d %.1fH%dM%d %.1fH%d\" stroke=\"#222\" "
                        "fill=\"none\"/>\n",
                        cx, y1, y2, cx - 5, y1, cx + 5, cx - 5, y2, cx + 5);
            }
            char num[32];
            fprintf(out,
                    "<text x=\"%d\" y=\"%.1f\" font-size=\"9\" text-anchor=\"middle\">%s</text>\n",
                    x + BAR_W / 2, y - 4, nm_svg_num(c->median[i], num, sizeof num));
        }
        /* the group's label, turned so long names fit */
        int lx = gx + c->n_series * BAR_W / 2;
        fprintf(out,
                "<text transform=\"translate(%d,%d) rotate(-30)\" font-size=\"11\" "
                "text-anchor=\"end\">",
                lx, M_TOP + H_PLOT + 14);
        text(out, c->groups[g]);
        fprintf(out, "</text>\n");
    }
    if (c->caption) {
        fprintf(out, "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#555\">", M_LEFT, h - 10);
        text(out, c->caption);
        fprintf(out, "</text>\n");
    }
    fprintf(out, "</svg>\n");
}
