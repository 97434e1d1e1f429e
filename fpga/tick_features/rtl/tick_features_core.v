// Tick-features core: per-symbol streaming features, one record per clock.
//
// Input: one 64-byte slot per s_axis beat (a TRADE or QUOTE wire record with a
// kind tag, see tick_features_fields.vh and docs/fpga.md).  Output: one
// 128-byte feature record per m_axis beat, in input order, TLAST preserved.
//
// Pipeline (no stalls once a record is accepted; back-pressure is handled by
// admitting a record only when the output FIFO has room for it and for every
// record already in flight):
//
//   in  -> q[1..MUL_STAGES]  price*size product pipeline; the block-RAM read
//                            of the symbol's state is issued from q[MUL_STAGES]
//       -> p1                state read data; forwarding mux (newest state of
//                            the same symbol from p2 or from the last write)
//       -> p2                new state and feature record; block-RAM write;
//                            push into the output FIFO (or the MMIO result)
//       -> out FIFO -> m_axis
//
// Latency from the s_axis handshake to the m_axis handshake is MUL_STAGES + 3
// cycles when m_axis_tready is high; the initiation interval is 1.

`default_nettype none
`timescale 1ns / 1ps

`include "tick_features_fields.vh"

module tick_features_core #(
    parameter N_SYMBOLS = 4096,  // symbol state entries; symbol ids >= N_SYMBOLS are rejected
    parameter MUL_STAGES = 3,  // register stages of the 64x64 price*size product (>= 1)
    parameter OUT_FIFO_DEPTH = 16  // output FIFO entries: a power of two >= MUL_STAGES + 4
) (
    input wire clk,
    input wire rst,

    // Input stream: one slot per beat.
    input  wire [`TF_IN_W-1:0] s_axis_tdata,
    input  wire                s_axis_tvalid,
    output wire                s_axis_tready,
    input  wire                s_axis_tlast,

    // Output stream: one feature record per beat.
    output wire [ `TF_OUT_W-1:0] m_axis_tdata,
    output wire [`TF_OUT_W/8-1:0] m_axis_tkeep,
    output wire                  m_axis_tvalid,
    input  wire                  m_axis_tready,
    output wire                  m_axis_tlast,

    // Control.
    input  wire                 enable,
    input  wire [`TF_K_BITS-1:0] k0,
    input  wire [`TF_K_BITS-1:0] k1,
    input  wire                 soft_reset,   // pulse: clear state and counters once idle
    output wire                 reset_busy,
    output wire                 idle,

    // Single-record MMIO path.
    input  wire                 mmio_submit,  // pulse: inject mmio_in as one record
    input  wire [ `TF_IN_W-1:0] mmio_in,
    output reg  [`TF_OUT_W-1:0] mmio_out,
    output wire                 mmio_done,
    output wire                 mmio_busy,

    // Counters.
    output wire [63:0] records_in,
    output wire [63:0] records_out,
    output wire [63:0] reject_symbol,
    output wire [63:0] reject_kind
);

  localparam SYM_W = (N_SYMBOLS > 1) ? $clog2(N_SYMBOLS) : 1;
  localparam FIFO_AW = $clog2(OUT_FIFO_DEPTH);
  localparam F = `TF_EMA_FRAC_BITS;

  // Symbol state word.
  localparam ST_HAS_T = 0;
  localparam ST_HAS_Q = 1;
  localparam ST_LP = 2;
  localparam ST_LS = ST_LP + 64;
  localparam ST_E0 = ST_LS + 64;
  localparam ST_E1 = ST_E0 + 64;
  localparam ST_PV = ST_E1 + 64;  // 128 bits
  localparam ST_VOL = ST_PV + 128;
  localparam ST_BP = ST_VOL + 64;
  localparam ST_BS = ST_BP + 64;
  localparam ST_AP = ST_BS + 64;
  localparam ST_AS = ST_AP + 64;
  localparam STATE_W = ST_AS + 64;

  // Parameter checks (elaboration fails on a bad value).
  generate
    if (MUL_STAGES < 1) begin : g_bad_mul_stages
      initial $fatal(1, "MUL_STAGES must be >= 1");
    end
    if (OUT_FIFO_DEPTH < MUL_STAGES + 4 || (1 << FIFO_AW) != OUT_FIFO_DEPTH) begin : g_bad_fifo
      initial $fatal(1, "OUT_FIFO_DEPTH must be a power of two >= MUL_STAGES + 4");
    end
    if (`TF_IN_TRADE_PRICE_W != 64 || `TF_IN_QUOTE_ASK_SIZE_W != 64 || `TF_IN_TRADE_SYMBOL_W != 32)
    begin : g_bad_fields
      initial $fatal(1, "tick_features_fields.vh: unexpected field widths");
    end
  endgenerate

  // -------------------------------------------------------------------------
  // Admission: a record enters only if the FIFO can hold it and all in flight.
  // -------------------------------------------------------------------------
  reg [FIFO_AW:0] fifo_count_reg = 0, fifo_count_next;
  reg [7:0] inflight_reg = 0, inflight_next;
  reg reset_pending_reg = 1'b1, reset_pending_next;
  reg sweep_reg = 1'b0, sweep_next;
  reg [SYM_W-1:0] sweep_addr_reg = 0, sweep_addr_next;
  reg mmio_pending_reg = 1'b0, mmio_pending_next;
  reg mmio_inflight_reg = 1'b0, mmio_inflight_next;
  reg mmio_done_reg = 1'b0, mmio_done_next;
  reg [63:0] records_in_reg = 0, records_in_next;
  reg [63:0] records_out_reg = 0, records_out_next;
  reg [63:0] reject_symbol_reg = 0, reject_symbol_next;
  reg [63:0] reject_kind_reg = 0, reject_kind_next;

  wire can_accept = enable && !reset_pending_reg && !sweep_reg &&
      (fifo_count_reg + inflight_reg < OUT_FIFO_DEPTH);
  wire inject_mmio = can_accept && mmio_pending_reg;
  assign s_axis_tready = can_accept && !mmio_pending_reg;
  wire s_fire = s_axis_tvalid && s_axis_tready;
  wire in_fire = s_fire || inject_mmio;

  wire [`TF_IN_W-1:0] in_data = inject_mmio ? mmio_in : s_axis_tdata;
  wire in_last = inject_mmio ? 1'b0 : s_axis_tlast;
  wire [7:0] in_kind = in_data[`TF_IN_KIND_LSB+:8];
  wire [31:0] in_sym = in_data[`TF_IN_TRADE_SYMBOL_LSB+:32];
  wire in_kind_ok = (in_kind == `TF_KIND_TRADE) || (in_kind == `TF_KIND_QUOTE);
  wire in_bad_kind = !in_kind_ok;
  wire in_bad_sym = in_kind_ok && (in_sym >= N_SYMBOLS);
  wire signed [63:0] in_a = in_data[`TF_IN_TRADE_PRICE_LSB+:64];  // price or bid_price
  wire signed [63:0] in_b = in_data[`TF_IN_TRADE_SIZE_LSB+:64];  // size or bid_size

  // -------------------------------------------------------------------------
  // q[1..MUL_STAGES]: the record and its price*size product.
  // -------------------------------------------------------------------------
  reg q_valid[1:MUL_STAGES];
  reg q_mmio[1:MUL_STAGES];
  reg q_last[1:MUL_STAGES];
  reg q_ok[1:MUL_STAGES];
  reg [3:0] q_rej[1:MUL_STAGES];  // FLAG_BAD_* bits
  reg [7:0] q_kind[1:MUL_STAGES];
  reg [31:0] q_sym[1:MUL_STAGES];
  reg [63:0] q_ts[1:MUL_STAGES];
  reg [63:0] q_seq[1:MUL_STAGES];
  reg [63:0] q_a[1:MUL_STAGES];
  reg [63:0] q_b[1:MUL_STAGES];
  reg [63:0] q_c[1:MUL_STAGES];
  reg [63:0] q_d[1:MUL_STAGES];
  reg signed [127:0] q_prod[1:MUL_STAGES];

  integer i;
  initial begin
    for (i = 1; i <= MUL_STAGES; i = i + 1) q_valid[i] = 1'b0;
  end

  always @(posedge clk) begin
    q_valid[1] <= in_fire;
    q_mmio[1] <= inject_mmio;
    q_last[1] <= in_last;
    q_ok[1] <= in_kind_ok && !in_bad_sym;
    q_rej[1] <= (in_bad_kind ? `TF_FLAG_BAD_KIND : 4'd0) | (in_bad_sym ? `TF_FLAG_BAD_SYMBOL : 4'd0);
    q_kind[1] <= in_kind;
    q_sym[1] <= in_sym;
    q_ts[1] <= in_data[`TF_IN_TRADE_TS_NS_LSB+:64];
    q_seq[1] <= records_in_reg;
    q_a[1] <= in_a;
    q_b[1] <= in_b;
    q_c[1] <= in_data[`TF_IN_QUOTE_ASK_PRICE_LSB+:64];
    q_d[1] <= in_data[`TF_IN_QUOTE_ASK_SIZE_LSB+:64];
    q_prod[1] <= in_a * in_b;  // signed, 128-bit result; retimed into the DSP cascade
    for (i = 2; i <= MUL_STAGES; i = i + 1) begin
      q_valid[i] <= q_valid[i-1];
      q_mmio[i] <= q_mmio[i-1];
      q_last[i] <= q_last[i-1];
      q_ok[i] <= q_ok[i-1];
      q_rej[i] <= q_rej[i-1];
      q_kind[i] <= q_kind[i-1];
      q_sym[i] <= q_sym[i-1];
      q_ts[i] <= q_ts[i-1];
      q_seq[i] <= q_seq[i-1];
      q_a[i] <= q_a[i-1];
      q_b[i] <= q_b[i-1];
      q_c[i] <= q_c[i-1];
      q_d[i] <= q_d[i-1];
      q_prod[i] <= q_prod[i-1];
    end
    if (rst) begin
      for (i = 1; i <= MUL_STAGES; i = i + 1) q_valid[i] <= 1'b0;
    end
  end

  // -------------------------------------------------------------------------
  // Symbol state block RAM: one read port (issued from q[MUL_STAGES]), one
  // write port (p2, or the clearing sweep).
  // -------------------------------------------------------------------------
  reg [STATE_W-1:0] state_ram[0:N_SYMBOLS-1];
  reg [STATE_W-1:0] ram_q;
  wire [SYM_W-1:0] rd_addr = q_sym[MUL_STAGES][SYM_W-1:0];

  always @(posedge clk) begin
    if (q_valid[MUL_STAGES]) ram_q <= state_ram[rd_addr];
  end

  // p1: the record with its state read back.
  reg p1_valid = 1'b0;
  reg p1_mmio, p1_last, p1_ok;
  reg [3:0] p1_rej;
  reg [7:0] p1_kind;
  reg [31:0] p1_sym;
  reg [63:0] p1_ts, p1_seq, p1_a, p1_b, p1_c, p1_d;
  reg [127:0] p1_prod;

  // p2: the record with its (forwarded) old state.
  reg p2_valid = 1'b0;
  reg p2_mmio, p2_last, p2_ok;
  reg [3:0] p2_rej;
  reg [7:0] p2_kind;
  reg [31:0] p2_sym;
  reg [63:0] p2_ts, p2_seq, p2_a, p2_b, p2_c, p2_d;
  reg [127:0] p2_prod;
  reg [STATE_W-1:0] p2_old;

  // The last state written (the write that raced p1's read).
  reg wb_valid = 1'b0;
  reg [31:0] wb_sym;
  reg [STATE_W-1:0] wb_state;

  // -------------------------------------------------------------------------
  // p2 arithmetic: new state and the feature record.
  // -------------------------------------------------------------------------
  wire p2_trade = (p2_kind == `TF_KIND_TRADE);
  wire old_has_t = p2_old[ST_HAS_T];
  wire old_has_q = p2_old[ST_HAS_Q];
  wire [63:0] old_e0 = p2_old[ST_E0+:64];
  wire [63:0] old_e1 = p2_old[ST_E1+:64];
  wire [127:0] old_pv = p2_old[ST_PV+:128];
  wire [63:0] old_vol = p2_old[ST_VOL+:64];

  wire [63:0] px = {p2_a[63-F:0], {F{1'b0}}};
  wire signed [63:0] d0 = px - old_e0;
  wire signed [63:0] d1 = px - old_e1;
  wire signed [63:0] s0 = d0 >>> k0;
  wire signed [63:0] s1 = d1 >>> k1;
  wire [63:0] t_e0 = old_has_t ? old_e0 + s0 : px;
  wire [63:0] t_e1 = old_has_t ? old_e1 + s1 : px;

  reg [STATE_W-1:0] new_state;
  always @* begin
    new_state = p2_old;
    if (p2_trade) begin
      new_state[ST_HAS_T] = 1'b1;
      new_state[ST_LP+:64] = p2_a;
      new_state[ST_LS+:64] = p2_b;
      new_state[ST_E0+:64] = t_e0;
      new_state[ST_E1+:64] = t_e1;
      new_state[ST_PV+:128] = old_pv + p2_prod;
      new_state[ST_VOL+:64] = old_vol + p2_b;
    end else begin
      new_state[ST_HAS_Q] = 1'b1;
      new_state[ST_BP+:64] = p2_a;
      new_state[ST_BS+:64] = p2_b;
      new_state[ST_AP+:64] = p2_c;
      new_state[ST_AS+:64] = p2_d;
    end
  end

  wire p2_write = p2_valid && p2_ok;

  reg [`TF_OUT_W-1:0] feat;
  always @* begin
    feat = {`TF_OUT_W{1'b0}};
    feat[`TF_OUT_TS_NS_LSB+:64] = p2_ts;
    feat[`TF_OUT_SYMBOL_LSB+:32] = p2_sym;
    feat[`TF_OUT_KIND_LSB+:8] = p2_kind;
    feat[`TF_OUT_SEQ_LSB+:64] = p2_seq;
    if (p2_ok) begin
      feat[`TF_OUT_FLAGS_LSB+:8] = {6'd0, new_state[ST_HAS_Q], new_state[ST_HAS_T]};
      feat[`TF_OUT_LAST_PRICE_LSB+:64] = new_state[ST_LP+:64];
      feat[`TF_OUT_LAST_SIZE_LSB+:64] = new_state[ST_LS+:64];
      feat[`TF_OUT_EMA0_LSB+:64] = new_state[ST_E0+:64];
      feat[`TF_OUT_EMA1_LSB+:64] = new_state[ST_E1+:64];
      feat[`TF_OUT_PV_LO_LSB+:64] = new_state[ST_PV+:64];
      feat[`TF_OUT_PV_HI_LSB+:64] = new_state[ST_PV+64+:64];
      feat[`TF_OUT_VOLUME_LSB+:64] = new_state[ST_VOL+:64];
      feat[`TF_OUT_BID_PRICE_LSB+:64] = new_state[ST_BP+:64];
      feat[`TF_OUT_ASK_PRICE_LSB+:64] = new_state[ST_AP+:64];
      feat[`TF_OUT_MID_X2_LSB+:64] = new_state[ST_BP+:64] + new_state[ST_AP+:64];
      feat[`TF_OUT_SPREAD_LSB+:64] = new_state[ST_AP+:64] - new_state[ST_BP+:64];
      feat[`TF_OUT_IMB_NUM_LSB+:64] = new_state[ST_BS+:64] - new_state[ST_AS+:64];
      feat[`TF_OUT_IMB_DEN_LSB+:64] = new_state[ST_BS+:64] + new_state[ST_AS+:64];
    end else begin
      feat[`TF_OUT_FLAGS_LSB+:8] = {4'd0, p2_rej};
    end
  end

  // -------------------------------------------------------------------------
  // p1 -> p2 with forwarding; state write; pipeline registers.
  // -------------------------------------------------------------------------
  reg [STATE_W-1:0] fwd_state;
  always @* begin
    if (p2_write && p2_sym == p1_sym) fwd_state = new_state;
    else if (wb_valid && wb_sym == p1_sym) fwd_state = wb_state;
    else fwd_state = ram_q;
  end

  always @(posedge clk) begin
    p1_valid <= q_valid[MUL_STAGES];
    p1_mmio <= q_mmio[MUL_STAGES];
    p1_last <= q_last[MUL_STAGES];
    p1_ok <= q_ok[MUL_STAGES];
    p1_rej <= q_rej[MUL_STAGES];
    p1_kind <= q_kind[MUL_STAGES];
    p1_sym <= q_sym[MUL_STAGES];
    p1_ts <= q_ts[MUL_STAGES];
    p1_seq <= q_seq[MUL_STAGES];
    p1_a <= q_a[MUL_STAGES];
    p1_b <= q_b[MUL_STAGES];
    p1_c <= q_c[MUL_STAGES];
    p1_d <= q_d[MUL_STAGES];
    p1_prod <= q_prod[MUL_STAGES];

    p2_valid <= p1_valid;
    p2_mmio <= p1_mmio;
    p2_last <= p1_last;
    p2_ok <= p1_ok;
    p2_rej <= p1_rej;
    p2_kind <= p1_kind;
    p2_sym <= p1_sym;
    p2_ts <= p1_ts;
    p2_seq <= p1_seq;
    p2_a <= p1_a;
    p2_b <= p1_b;
    p2_c <= p1_c;
    p2_d <= p1_d;
    p2_prod <= p1_prod;
    p2_old <= fwd_state;

    wb_valid <= p2_write;
    wb_sym <= p2_sym;
    wb_state <= new_state;

    if (sweep_reg) state_ram[sweep_addr_reg] <= {STATE_W{1'b0}};
    else if (p2_write) state_ram[p2_sym[SYM_W-1:0]] <= new_state;

    if (rst) begin
      p1_valid <= 1'b0;
      p2_valid <= 1'b0;
      wb_valid <= 1'b0;
    end
  end

  // -------------------------------------------------------------------------
  // Output FIFO (first word fall-through) and the MMIO result register.
  // -------------------------------------------------------------------------
  reg [`TF_OUT_W:0] fifo_mem[0:OUT_FIFO_DEPTH-1];  // {last, data}
  reg [FIFO_AW-1:0] fifo_wr_reg = 0, fifo_rd_reg = 0;

  wire fifo_push = p2_valid && !p2_mmio;
  wire m_fire = m_axis_tvalid && m_axis_tready;
  assign m_axis_tvalid = (fifo_count_reg != 0);
  assign m_axis_tdata = fifo_mem[fifo_rd_reg][`TF_OUT_W-1:0];
  assign m_axis_tlast = fifo_mem[fifo_rd_reg][`TF_OUT_W];
  assign m_axis_tkeep = {(`TF_OUT_W / 8) {1'b1}};

  wire mmio_capture = p2_valid && p2_mmio;

  always @(posedge clk) begin
    if (fifo_push) begin
      fifo_mem[fifo_wr_reg] <= {p2_last, feat};
      fifo_wr_reg <= fifo_wr_reg + 1'b1;
    end
    if (m_fire) fifo_rd_reg <= fifo_rd_reg + 1'b1;
    if (mmio_capture) mmio_out <= feat;
    if (rst) begin
      fifo_wr_reg <= 0;
      fifo_rd_reg <= 0;
    end
  end

  // -------------------------------------------------------------------------
  // Control: counts, soft reset sweep, MMIO handshake, counters.
  // -------------------------------------------------------------------------
  wire pipe_empty = (inflight_reg == 0) && (fifo_count_reg == 0);

  always @* begin
    fifo_count_next = fifo_count_reg + (fifo_push ? 1'b1 : 1'b0) - (m_fire ? 1'b1 : 1'b0);
    inflight_next = inflight_reg + (in_fire ? 1'b1 : 1'b0) - (p2_valid ? 1'b1 : 1'b0);
    reset_pending_next = reset_pending_reg || soft_reset;
    sweep_next = sweep_reg;
    sweep_addr_next = sweep_addr_reg;
    mmio_pending_next = mmio_pending_reg;
    mmio_inflight_next = mmio_inflight_reg;
    mmio_done_next = mmio_done_reg;
    records_in_next = records_in_reg + (in_fire ? 64'd1 : 64'd0);
    records_out_next = records_out_reg + (m_fire ? 64'd1 : 64'd0) + (mmio_capture ? 64'd1 : 64'd0);
    reject_symbol_next = reject_symbol_reg + ((in_fire && in_bad_sym) ? 64'd1 : 64'd0);
    reject_kind_next = reject_kind_reg + ((in_fire && in_bad_kind) ? 64'd1 : 64'd0);

    if (mmio_submit && !mmio_pending_reg && !mmio_inflight_reg) begin
      mmio_pending_next = 1'b1;
      mmio_done_next = 1'b0;
    end
    if (inject_mmio) begin
      mmio_pending_next = 1'b0;
      mmio_inflight_next = 1'b1;
    end
    if (mmio_capture) begin
      mmio_inflight_next = 1'b0;
      mmio_done_next = 1'b1;
    end

    if (sweep_reg) begin
      sweep_addr_next = sweep_addr_reg + 1'b1;
      if (sweep_addr_reg == N_SYMBOLS - 1) begin
        sweep_next = 1'b0;
        reset_pending_next = 1'b0;
      end
    end else if (reset_pending_reg && pipe_empty) begin
      // Quiescent: every accepted record has been delivered.  Clear it all.
      sweep_next = 1'b1;
      sweep_addr_next = 0;
      records_in_next = 0;
      records_out_next = 0;
      reject_symbol_next = 0;
      reject_kind_next = 0;
      mmio_done_next = 1'b0;
    end
  end

  always @(posedge clk) begin
    fifo_count_reg <= fifo_count_next;
    inflight_reg <= inflight_next;
    reset_pending_reg <= reset_pending_next;
    sweep_reg <= sweep_next;
    sweep_addr_reg <= sweep_addr_next;
    mmio_pending_reg <= mmio_pending_next;
    mmio_inflight_reg <= mmio_inflight_next;
    mmio_done_reg <= mmio_done_next;
    records_in_reg <= records_in_next;
    records_out_reg <= records_out_next;
    reject_symbol_reg <= reject_symbol_next;
    reject_kind_reg <= reject_kind_next;
    if (rst) begin
      fifo_count_reg <= 0;
      inflight_reg <= 0;
      reset_pending_reg <= 1'b1;  // clear the block RAM after power-on
      sweep_reg <= 1'b0;
      sweep_addr_reg <= 0;
      mmio_pending_reg <= 1'b0;
      mmio_inflight_reg <= 1'b0;
      mmio_done_reg <= 1'b0;
      records_in_reg <= 0;
      records_out_reg <= 0;
      reject_symbol_reg <= 0;
      reject_kind_reg <= 0;
    end
  end

  assign reset_busy = reset_pending_reg || sweep_reg;
  assign idle = pipe_empty && !mmio_pending_reg;
  assign mmio_done = mmio_done_reg;
  assign mmio_busy = mmio_pending_reg || mmio_inflight_reg;
  assign records_in = records_in_reg;
  assign records_out = records_out_reg;
  assign reject_symbol = reject_symbol_reg;
  assign reject_kind = reject_kind_reg;

endmodule

`default_nettype wire
