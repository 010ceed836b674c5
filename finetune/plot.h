/* plot.h: the loss curve of a run as an SVG picture. */
#ifndef OH_PLOT_H
#define OH_PLOT_H
#include "util/util.h"

typedef struct plot_series {
    const char *label;
    const char *color;   /* CSS color */
    const double *x, *y;
    int n;
} plot_series;

/* Write an SVG line chart (x: step, y: loss) of the series to path, atomically. */
int plot_svg(const char *path, const char *title, const plot_series *s, int ns, oh_err *err);
#endif
