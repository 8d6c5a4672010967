/* Grouped bar charts as standalone SVG files, for `numalm bench` reports:
 * one bar per (group, series) at its median, a whisker from its min to its
 * max, a y axis with round ticks, a legend. No dependencies: the files
 * open in any browser and convert with rsvg-convert. */
#ifndef NM_CLI_SVG_H
#define NM_CLI_SVG_H

#include <stdio.h>

typedef struct nm_svg_chart {
    const char *title;
    const char *y_label;
    int n_groups, n_series;
    const char *const *groups; /* x axis labels */
    const char *const *series; /* legend */
    /* [g * n_series + s]; NaN (or median < 0): no bar */
    const double *median, *lo, *hi;
    const char *caption; /* under the plot, may be NULL */
} nm_svg_chart;

void nm_svg_bars(const nm_svg_chart *c, FILE *out);

/* A figure with about 3 significant digits and no exponent: "1930",
 * "74.7", "0.405". */
const char *nm_svg_num(double v, char *buf, size_t n);

#endif
