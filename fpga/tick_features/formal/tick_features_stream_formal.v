// Formal check of the stream contract of tick_features_core (yosys-smtbmc).
//
// Every input is free: the stream's data, TVALID and TLAST, the sink's
// TREADY, ENABLE, SOFT_RESET pulses and single-record MMIO submits at any
// time.  The only assumption: the power-on reset is asserted in the first
// cycle and never again.  Checked, at every step up to the bounded depth:
//
//   A1  no output without an input: stream beats out <= stream beats in;
//   A2  the record the sink receives as its k-th beat is the k-th beat the
//       source sent (its ts_ns and TLAST), for a k chosen by the solver: no
//       record lost, duplicated or reordered, MMIO records never on m_axis;
//   A3  at most OUT_FIFO_DEPTH records between the two handshakes;
//   A4  AXI4-Stream: once m_axis_tvalid is high it stays high, with the
//       same ts_ns, seq and TLAST, until m_axis_tready;
//   A5  nothing is accepted while the state is being cleared (RESET_BUSY: after
//       the reset and after a soft reset), and m_axis_tvalid is low whenever
//       no stream record is pending;
//   A6  with the sink ready for LIVE cycles in a row, every record accepted
//       LIVE or more cycles ago has been delivered (nothing stuck);
//   A7  consecutive stream outputs carry increasing seq numbers (seq is the
//       index of the record since soft reset, MMIO records included) unless a
//       soft reset came between them.
//
// The feature arithmetic is not in these properties' cone and is removed by
// the synthesis script; it is checked bit for bit by the cocotb scoreboard.
//
// Narrowed data.  Of each input slot the kind (8 bits), the symbol (32 bits)
// and the low TS_W bits of ts_ns are free; every other bit is zero.  The kind
// and the symbol steer the core (rejects, forwarding, the state address); the
// ts_ns bits only travel with their record, as the other fields do, so they
// mark the beats: with 2^TS_W marks the solver can give the watched beat a
// mark that differs from every beat it could be confused with.  The widths
// of the core are unchanged (the zero bits are constants it carries).

`default_nettype none
`timescale 1ns / 1ps

`include "tick_features_fields.vh"

module tick_features_stream_formal #(
    parameter N_SYMBOLS = 2,  // small table: the contract does not depend on it
    parameter MUL_STAGES = 4,  // the 322 MHz configuration
    parameter OUT_FIFO_DEPTH = 8,  // the smallest legal buffer for MUL_STAGES = 4
    parameter TS_W = 4,  // free low bits of ts_ns: the marks of the beats
    parameter [6:0] PROPS = 7'h7F  // bit i - 1 enables property Ai (all by default)
) (
    input wire clk,
    input wire rst,
    input wire [TS_W-1:0] s_ts,
    input wire [31:0] s_sym,
    input wire [7:0] s_kind,
    input wire s_axis_tvalid,
    input wire s_axis_tlast,
    input wire m_axis_tready,
    input wire enable,
    input wire soft_reset,
    input wire mmio_submit,
    input wire [TS_W-1:0] mmio_ts,
    input wire [31:0] mmio_sym,
    input wire [7:0] mmio_kind
);

  // An input slot with only the kind, the symbol and the low ts_ns bits free.
  function [`TF_IN_W-1:0] slot(input [TS_W-1:0] ts, input [31:0] sym, input [7:0] kind);
    begin
      slot = {`TF_IN_W{1'b0}};
      slot[`TF_IN_TRADE_TS_NS_LSB+:TS_W] = ts;
      slot[`TF_IN_TRADE_SYMBOL_LSB+:32] = sym;
      slot[`TF_IN_KIND_LSB+:8] = kind;
    end
  endfunction
  wire [`TF_IN_W-1:0] s_axis_tdata = slot(s_ts, s_sym, s_kind);
  wire [`TF_IN_W-1:0] mmio_in = slot(mmio_ts, mmio_sym, mmio_kind);

  localparam LATENCY = MUL_STAGES + 3;
  localparam LIVE = 2 * LATENCY + 2;

  wire s_axis_tready, m_axis_tvalid, m_axis_tlast;
  wire [`TF_OUT_W-1:0] m_axis_tdata;
  wire [`TF_OUT_W/8-1:0] m_axis_tkeep;
  wire reset_busy, idle, mmio_done, mmio_busy;
  wire [`TF_OUT_W-1:0] mmio_out;
  wire [63:0] records_in, records_out, reject_symbol, reject_kind;
  wire [7:0] f_stream_pending;

  tick_features_core #(
      .N_SYMBOLS(N_SYMBOLS),
      .MUL_STAGES(MUL_STAGES),
      .OUT_FIFO_DEPTH(OUT_FIFO_DEPTH)
  ) dut (
      .clk(clk),
      .rst(rst),
      .s_axis_tdata(s_axis_tdata),
      .s_axis_tvalid(s_axis_tvalid),
      .s_axis_tready(s_axis_tready),
      .s_axis_tlast(s_axis_tlast),
      .m_axis_tdata(m_axis_tdata),
      .m_axis_tkeep(m_axis_tkeep),
      .m_axis_tvalid(m_axis_tvalid),
      .m_axis_tready(m_axis_tready),
      .m_axis_tlast(m_axis_tlast),
      .enable(enable),
      .k0_sel(2'd2),
      .k1_sel(2'd1),
      .soft_reset(soft_reset),
      .reset_busy(reset_busy),
      .idle(idle),
      .mmio_submit(mmio_submit),
      .mmio_in(mmio_in),
      .mmio_out(mmio_out),
      .mmio_done(mmio_done),
      .mmio_busy(mmio_busy),
      .records_in(records_in),
      .records_out(records_out),
      .reject_symbol(reject_symbol),
      .reject_kind(reject_kind),
      .f_stream_pending(f_stream_pending)
  );

  wire [63:0] in_ts = s_axis_tdata[`TF_IN_TRADE_TS_NS_LSB+:64];
  wire [63:0] out_ts = m_axis_tdata[`TF_OUT_TS_NS_LSB+:64];
  wire [63:0] out_seq = m_axis_tdata[`TF_OUT_SEQ_LSB+:64];
  wire s_fire = s_axis_tvalid && s_axis_tready;
  wire m_fire = m_axis_tvalid && m_axis_tready;

  reg init = 1'b1;
  always @(posedge clk) init <= 1'b0;
  always @* assume(rst == init);

  // Stream beats in and out since reset, and one watched beat.
  reg [7:0] n_in = 0, n_out = 0;
  (* anyconst *) reg [7:0] watch;
  reg w_seen = 1'b0;
  reg [63:0] w_ts;
  reg w_last;
  always @(posedge clk) begin
    if (s_fire) n_in <= n_in + 1'b1;
    if (m_fire) n_out <= n_out + 1'b1;
    if (s_fire && n_in == watch) begin
      w_seen <= 1'b1;
      w_ts <= in_ts;
      w_last <= s_axis_tlast;
    end
    if (rst) begin
      n_in <= 0;
      n_out <= 0;
      w_seen <= 1'b0;
    end
  end

  // History of n_in and the length of the current run of sink-ready cycles.
  reg [7:0] n_in_hist[0:LIVE];
  reg [7:0] ready_run = 0;
  integer h;
  always @(posedge clk) begin
    n_in_hist[0] <= n_in;
    for (h = 1; h <= LIVE; h = h + 1) n_in_hist[h] <= n_in_hist[h-1];
    ready_run <= (m_axis_tready && ready_run != 8'hFF) ? ready_run + 1'b1 : (m_axis_tready ? ready_run : 8'd0);
    if (rst) ready_run <= 0;
  end
  reg [LIVE:0] hist_valid = 0;
  always @(posedge clk) hist_valid <= rst ? 0 : {hist_valid[LIVE-1:0], 1'b1};

  // Previous cycle, for the AXI4-Stream rule and seq ordering.
  reg past_valid = 1'b0, past_tvalid = 1'b0, past_tready = 1'b0, past_tlast = 1'b0;
  reg [63:0] past_ts, past_seq;
  reg have_last_seq = 1'b0;
  reg [63:0] last_seq;
  // A soft reset's sweep (the only time seq restarts) since the last stream
  // output: the core is busy resetting with nothing pending.  (A soft reset
  // request alone is not enough: the records accepted before it still drain,
  // with their old seq, before the sweep.)
  reg soft_reset_seen = 1'b0;
  always @(posedge clk) begin
    past_valid <= !rst;
    past_tvalid <= m_axis_tvalid;
    past_tready <= m_axis_tready;
    past_tlast <= m_axis_tlast;
    past_ts <= out_ts;
    past_seq <= out_seq;
    if (reset_busy && n_in == n_out) soft_reset_seen <= 1'b1;
    if (m_fire) begin
      have_last_seq <= 1'b1;
      last_seq <= out_seq;
      soft_reset_seen <= 1'b0;
    end
    if (rst) begin
      have_last_seq <= 1'b0;
      soft_reset_seen <= 1'b0;
    end
  end

  always @* begin
    if (!rst) begin
      // A0 (always checked): the wrapper's count of records between the
      // handshakes equals the one the core's pipeline state implies.  Checked
      // like the others, and a lemma that keeps A1, A3 and A5 local to a step.
      assert (n_in - n_out == f_stream_pending);
      if (PROPS[0]) begin  // A1
        assert (n_out <= n_in);
      end
      if (PROPS[1]) begin  // A2
        if (m_fire && n_out == watch) begin
          assert (w_seen);
          assert (out_ts == w_ts);
          assert (m_axis_tlast == w_last);
        end
      end
      if (PROPS[2]) begin  // A3
        assert (n_in - n_out <= OUT_FIFO_DEPTH);
      end
      if (PROPS[3]) begin  // A4
        if (past_valid && past_tvalid && !past_tready) begin
          assert (m_axis_tvalid);
          assert (out_ts == past_ts);
          assert (out_seq == past_seq);
          assert (m_axis_tlast == past_tlast);
        end
      end
      if (PROPS[4]) begin  // A5
        if (reset_busy) assert (!s_axis_tready);
        if (n_in == n_out) assert (!m_axis_tvalid);
      end
      if (PROPS[5]) begin  // A6
        if (hist_valid[LIVE] && ready_run >= LIVE) assert (n_out >= n_in_hist[LIVE]);
      end
      if (PROPS[6]) begin  // A7
        if (m_fire && have_last_seq && !soft_reset_seen) assert (out_seq > last_seq);
      end
    end
  end

endmodule

`default_nettype wire
