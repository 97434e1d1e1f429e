/* A tickpath subscriber in C over libzmq: decodes every result kind from the README's
 * byte tables and prints one JSON object per result record.
 *
 *   subscriber ENDPOINT COUNT [TIMEOUT_MS [IDLE_MS]]
 *
 * Receives up to COUNT result messages (topic, then one frame; `stats` is skipped)
 * and prints, per record: {"topic", "kind", "seq", "index", "hex" (the whole
 * frame), "fields": {name: value}}; NaN prints as null.  It stops after COUNT
 * results, once results have come and none came for IDLE_MS (default: never), or
 * on SIGINT/SIGTERM (exit status 0 then).
 * Exit status 1 when no result comes within TIMEOUT_MS (default 120 s) or a
 * frame does not follow the format. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zmq.h>

#include "tickpath.h"

static int first;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void key(const char *name) {
    printf("%s\"%s\":", first ? "" : ",", name);
    first = 0;
}
static void f_i64(const char *name, const uint8_t *p) { key(name); printf("%lld", (long long)rd_i64(p)); }
static void f_u64(const char *name, const uint8_t *p) { key(name); printf("%llu", (unsigned long long)rd_u64(p)); }
static void f_u32(const char *name, const uint8_t *p) { key(name); printf("%lu", (unsigned long)rd_u32(p)); }
static void f_u16(const char *name, const uint8_t *p) { key(name); printf("%u", rd_u16(p)); }
static void f_u8(const char *name, const uint8_t *p) { key(name); printf("%u", rd_u8(p)); }
static void put_f64(double v) {
    if (isnan(v)) printf("null");
    else printf("%.17g", v);
}
static void f_f64(const char *name, const uint8_t *p) { key(name); put_f64(rd_f64(p)); }
static void a_i64(const char *name, const uint8_t *p, int n) {
    key(name);
    for (int i = 0; i < n; i++) printf("%s%lld", i ? "," : "[", (long long)rd_i64(p + 8 * i));
    printf("]");
}
static void a_u32(const char *name, const uint8_t *p, int n) {
    key(name);
    for (int i = 0; i < n; i++) printf("%s%lu", i ? "," : "[", (unsigned long)rd_u32(p + 4 * i));
    printf("]");
}
static void a_f64(const char *name, const uint8_t *p, int n) {
    key(name);
    for (int i = 0; i < n; i++) { printf(i ? "," : "["); put_f64(rd_f64(p + 8 * i)); }
    printf("]");
}

/* The 48-byte common block (README "Common block"). */
static void common(const uint8_t *r) {
    f_i64("ts_ns", r + 0);
    f_u64("in_seq", r + 8);
    f_i64("in_send_ns", r + 16);
    f_i64("recv_ns", r + 24);
    f_i64("done_ns", r + 32);
    f_u32("in_stream", r + 40);
    f_u32("symbol", r + 44);
}

static void result_quote(const uint8_t *r) {
    f_i64("bid_price", r + 48); f_i64("bid_size", r + 56);
    f_i64("ask_price", r + 64); f_i64("ask_size", r + 72);
    f_f64("mid", r + 80); f_f64("spread", r + 88);
    f_f64("microprice", r + 96); f_f64("imbalance", r + 104);
}
static void result_trade(const uint8_t *r) {
    f_i64("price", r + 48); f_i64("size", r + 56);
    a_f64("ema", r + 64, 4);
    f_f64("vwap_session", r + 96); f_f64("vwap_window", r + 104);
    f_f64("ret_mean", r + 112); f_f64("ret_var", r + 120);
    f_f64("realized_vol", r + 128); f_f64("trade_flow_imbalance", r + 136);
    f_u32("n_returns", r + 144);
}
static void result_bar(const uint8_t *r) {
    f_i64("bar_start_ns", r + 48);
    f_i64("open", r + 56); f_i64("high", r + 64); f_i64("low", r + 72); f_i64("close", r + 80);
    f_i64("volume", r + 88); f_u32("n_trades", r + 96);
}
static void result_book(const uint8_t *r) {
    a_i64("bid_price", r + 48, 5); a_i64("bid_size", r + 88, 5); a_u32("bid_orders", r + 128, 5);
    a_i64("ask_price", r + 148, 5); a_i64("ask_size", r + 188, 5); a_u32("ask_orders", r + 228, 5);
    f_u32("bid_levels", r + 248); f_u32("ask_levels", r + 252);
    f_f64("depth_imbalance", r + 256);
}
static void result_chain(const uint8_t *r) {
    f_u32("option_symbol", r + 48); f_u32("index", r + 52);
    f_u8("is_call", r + 56); f_u8("backend", r + 57); f_u16("flags", r + 58);
    static const char *names[] = {"strike", "expiry", "underlying", "rate", "dividend", "sigma",
                                  "price", "delta", "gamma", "vega", "theta", "rho",
                                  "option_mid", "implied_vol"};
    for (int i = 0; i < 14; i++) f_f64(names[i], r + 64 + 8 * i);
}
static void result_fpga(const uint8_t *r) {
    f_u8("core_kind", r + 48); f_u8("flags", r + 49);
    f_u64("core_seq", r + 56);
    f_i64("last_price", r + 64); f_i64("last_size", r + 72);
    f_i64("ema0", r + 80); f_i64("ema1", r + 88);
    f_u64("pv_lo", r + 96); f_i64("pv_hi", r + 104); f_i64("volume", r + 112);
    f_i64("bid_price", r + 120); f_i64("ask_price", r + 128); f_i64("mid_x2", r + 136);
    f_i64("spread", r + 144); f_i64("imb_num", r + 152); f_i64("imb_den", r + 160);
}
static void result_corr(const uint8_t *r) {
    f_u32("symbol_b", r + 48); f_u32("n_rows", r + 52);
    f_u8("backend", r + 56); f_u8("flags", r + 57); f_u32("n_symbols", r + 60);
    f_f64("covariance", r + 64); f_f64("correlation", r + 72);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ENDPOINT COUNT [TIMEOUT_MS]\n", argv[0]);
        return 2;
    }
    long want = atol(argv[2]);
    int timeout_ms = argc > 3 ? atoi(argv[3]) : 120000;
    long idle_ms = argc > 4 ? atol(argv[4]) : -1;
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int hwm = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(sub, argv[1]) != 0) {
        fprintf(stderr, "subscriber: connect %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 1;
    }
    static uint8_t frame[1 << 20];
    char topic[256];
    long got = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    long waited_ms = 0;
    while (got < want && !stop) {
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 100) <= 0) {
            if (stop) break;
            waited_ms += 100;
            if (got == 0 && waited_ms >= timeout_ms) {
                fprintf(stderr, "subscriber: no result within %d ms\n", timeout_ms);
                return 1;
            }
            if (got > 0 && idle_ms >= 0 && waited_ms >= idle_ms) break;
            continue;
        }
        int tn = zmq_recv(sub, topic, sizeof topic - 1, 0);
        if (tn < 0) {
            fprintf(stderr, "subscriber: recv: %s\n", zmq_strerror(zmq_errno()));
            return 1;
        }
        topic[tn < (int)sizeof topic - 1 ? tn : (int)sizeof topic - 1] = 0;
        int n = zmq_recv(sub, frame, sizeof frame, 0);
        if (n < 0 || n > (int)sizeof frame) {
            fprintf(stderr, "subscriber: bad or oversized frame on %s\n", topic);
            return 1;
        }
        if (strcmp(topic, "stats") == 0) continue; /* JSON: README "The stats message" */
        waited_ms = 0;
        if (n < TKP_HEADER_SIZE || rd_u32(frame) != TKP_MAGIC || rd_u16(frame + 4) != TKP_VERSION) {
            fprintf(stderr, "subscriber: not a tickpath frame on %s\n", topic);
            return 1;
        }
        uint16_t kind = rd_u16(frame + 6);
        uint32_t count = rd_u32(frame + 12);
        uint64_t seq = rd_u64(frame + 16);
        int size;
        void (*decode)(const uint8_t *);
        switch (kind) {
        case KIND_RESULT_QUOTE: size = RESULT_QUOTE_SIZE; decode = result_quote; break;
        case KIND_RESULT_TRADE: size = RESULT_TRADE_SIZE; decode = result_trade; break;
        case KIND_RESULT_BAR: size = RESULT_BAR_SIZE; decode = result_bar; break;
        case KIND_RESULT_BOOK: size = RESULT_BOOK_SIZE; decode = result_book; break;
        case KIND_RESULT_CHAIN: size = RESULT_CHAIN_SIZE; decode = result_chain; break;
        case KIND_RESULT_FPGA: size = RESULT_FPGA_SIZE; decode = result_fpga; break;
        case KIND_RESULT_CORR: size = RESULT_CORR_SIZE; decode = result_corr; break;
        default:
            fprintf(stderr, "subscriber: unknown result kind %u on %s\n", kind, topic);
            return 1;
        }
        if ((long)n != TKP_HEADER_SIZE + (long)count * size) {
            fprintf(stderr, "subscriber: %s: %d bytes for %u records of %d\n", topic, n, count, size);
            return 1;
        }
        for (uint32_t i = 0; i < count; i++) {
            const uint8_t *r = frame + TKP_HEADER_SIZE + (size_t)i * size;
            printf("{\"topic\":\"%s\",\"kind\":%u,\"seq\":%llu,\"index\":%u,\"hex\":\"", topic, kind,
                   (unsigned long long)seq, i);
            for (int b = 0; b < n; b++) printf("%02x", frame[b]);
            printf("\",\"fields\":{");
            first = 1;
            common(r);
            decode(r);
            printf("}}\n");
        }
        got++;
        fflush(stdout);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return 0;
}
