/* The upload report: text and --json. GB/s are decimal (1e9 bytes). */
#include "upload.h"

#include "common/util.h"

static double gbps(uint64_t bytes, double s) {
    return s > 0 ? (double)bytes / s / 1e9 : 0;
}

/* The slower of the disk and the link: what a perfectly overlapped
 * pipeline would reach. */
static double limit_gbps(const nm_upload *u) {
    double disk = gbps(u->bytes, u->read_s), link = gbps(u->bytes, u->copy_s);
    return disk < link ? disk : link;
}

static const char *io_name(const nm_upload *u) {
    return !u->direct ? "buffered" : u->uring ? "O_DIRECT + io_uring" : "O_DIRECT + preadv";
}

void nm_upload_print(const nm_upload *u, FILE *out) {
    const nm_device *d = u->dev;
    char b1[32], b2[32], cpus[128];
    fprintf(out, "device: %s %d, %s", d->kind, d->ordinal, d->name);
    if (d->busid[0])
        fprintf(out, " (bus %s)", d->busid);
    if (d->node >= 0)
        fprintf(out, ", nearest node %d", d->node);
    else
        fprintf(out, ", nearest node unknown");
    fprintf(out, "\n");
    fprintf(out,
            "  uploaded %d tensors, %s in %.3f s: %.2f GB/s end to end (set-up before it "
            "%.3f s)\n",
            u->n_uploaded, nm_fmt_bytes(u->bytes, b1, sizeof b1), u->seconds,
            gbps(u->bytes, u->seconds), u->setup_s);
    fprintf(out, "  disk -> host:   %.2f GB/s (%s, reader busy %.3f s)\n",
            gbps(u->bytes, u->read_s), io_name(u), u->read_s);
    fprintf(out, "  host -> device: %.2f GB/s (a copy in flight %.3f s)\n",
            gbps(u->bytes, u->copy_s), u->copy_s);
    fprintf(out, "  staging: node %d, %s, %d slots x %s", u->staging_node,
            u->pinned ? "page-locked" : "pageable (not page-locked)", u->n_slots,
            nm_fmt_bytes(u->slot_bytes, b2, sizeof b2));
    if (u->staging_placed_pct >= 0)
        fprintf(out, ", %.0f%% of its pages on node %d", u->staging_placed_pct, u->staging_node);
    fprintf(out, "; reader on cpus %s\n",
            u->n_reader_cpus ? nm_fmt_int_list(u->reader_cpus, u->n_reader_cpus, cpus, sizeof cpus)
                             : "?");
    double lim = limit_gbps(u);
    fprintf(out,
            "  disk and link busy at once %.3f s; min(disk, link) %.2f GB/s, end to end at "
            "%.0f%% of it\n",
            u->overlap_s, lim, lim > 0 ? 100 * gbps(u->bytes, u->seconds) / lim : 0);
    for (int i = 0; i < u->n_notes; i++)
        fprintf(out, "  note: %s\n", u->notes[i]);
    if (u->verified && u->verify_ok)
        fprintf(out, "  verify: all %d tensors hashed on the device match the file\n",
                u->n_uploaded);
    else if (u->verified)
        fprintf(out, "  verify: %d of %d tensors differ on the device: %s\n", u->n_mismatches,
                u->n_uploaded, u->mismatches);
}

void nm_upload_json_fields(const nm_upload *u, nm_json *j) {
    const nm_device *d = u->dev;
    nm_json_kstr(j, "device", d->kind);
    nm_json_kint(j, "ordinal", d->ordinal);
    nm_json_kstr(j, "name", d->name);
    nm_json_kstr(j, "busid", d->busid);
    nm_json_kint(j, "device_node", d->node);
    nm_json_kint(j, "staging_node", u->staging_node);
    nm_json_kbool(j, "pinned", u->pinned);
    nm_json_kint(j, "slots", u->n_slots);
    nm_json_kuint(j, "slot_bytes", u->slot_bytes);
    nm_json_kint(j, "tensors", u->n_uploaded);
    nm_json_kint(j, "pieces", u->n_pieces);
    nm_json_kuint(j, "bytes", u->bytes);
    nm_json_kuint(j, "device_bytes", u->dev_bytes);
    nm_json_kstr(j, "io", u->direct ? "dio" : "buffered");
    nm_json_kbool(j, "io_uring", u->uring);
    nm_json_kdouble(j, "setup_s", u->setup_s);
    nm_json_kdouble(j, "seconds", u->seconds);
    nm_json_kdouble(j, "gbps", gbps(u->bytes, u->seconds));
    nm_json_kdouble(j, "disk_gbps", gbps(u->bytes, u->read_s));
    nm_json_kdouble(j, "h2d_gbps", gbps(u->bytes, u->copy_s));
    nm_json_kdouble(j, "limit_gbps", limit_gbps(u));
    nm_json_kdouble(j, "read_s", u->read_s);
    nm_json_kdouble(j, "copy_s", u->copy_s);
    nm_json_kdouble(j, "overlap_s", u->overlap_s);
    nm_json_kdouble(j, "wait_s", u->wait_s);
    nm_json_key(j, "staging_placed_pct");
    if (u->staging_placed_pct >= 0)
        nm_json_double(j, u->staging_placed_pct);
    else
        nm_json_null(j);
    nm_json_kint_array(j, "reader_cpus", u->reader_cpus, u->n_reader_cpus);
    nm_json_key(j, "notes");
    nm_json_arr_begin(j);
    for (int i = 0; i < u->n_notes; i++)
        nm_json_str(j, u->notes[i]);
    nm_json_arr_end(j);
    nm_json_kbool(j, "verified", u->verified);
    if (u->verified) {
        nm_json_kbool(j, "verify_ok", u->verify_ok);
        nm_json_kint(j, "mismatches", u->n_mismatches);
        if (u->n_mismatches)
            nm_json_kstr(j, "mismatched", u->mismatches);
    }
}
