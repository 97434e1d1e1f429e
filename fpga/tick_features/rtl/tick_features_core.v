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
    output wire [`TF_OUT_W-1:0] mmio_out,
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
  reg q_valid_reg[1:MUL_STAGES];
  reg q_mmio_reg[1:MUL_STAGES];
  reg q_last_reg[1:MUL_STAGES];
  reg q_ok_reg[1:MUL_STAGES];
  reg [3:0] q_rej_reg[1:MUL_STAGES];  // FLAG_BAD_* bits
  reg [7:0] q_kind_reg[1:MUL_STAGES];
  reg [31:0] q_sym_reg[1:MUL_STAGES];
  reg [63:0] q_ts_reg[1:MUL_STAGES];
  reg [63:0] q_seq_reg[1:MUL_STAGES];
  reg [63:0] q_a_reg[1:MUL_STAGES];
  reg [63:0] q_b_reg[1:MUL_STAGES];
  reg [63:0] q_c_reg[1:MUL_STAGES];
  reg [63:0] q_d_reg[1:MUL_STAGES];
  reg signed [127:0] q_prod_reg[1:MUL_STAGES];

  integer i;
  initial begin
    for (i = 1; i <= MUL_STAGES; i = i + 1) q_valid_reg[i] = 1'b0;
  end

  always @(posedge clk) begin
    q_valid_reg[1] <= in_fire;
    q_mmio_reg[1] <= inject_mmio;
    q_last_reg[1] <= in_last;
    q_ok_reg[1] <= in_kind_ok && !in_bad_sym;
    q_rej_reg[1] <= (in_bad_kind ? `TF_FLAG_BAD_KIND : 4'd0) | (in_bad_sym ? `TF_FLAG_BAD_SYMBOL : 4'd0);
    q_kind_reg[1] <= in_kind;
    q_sym_reg[1] <= in_sym;
    q_ts_reg[1] <= in_data[`TF_IN_TRADE_TS_NS_LSB+:64];
    q_seq_reg[1] <= records_in_reg;
    q_a_reg[1] <= in_a;
    q_b_reg[1] <= in_b;
    q_c_reg[1] <= in_data[`TF_IN_QUOTE_ASK_PRICE_LSB+:64];
    q_d_reg[1] <= in_data[`TF_IN_QUOTE_ASK_SIZE_LSB+:64];
    q_prod_reg[1] <= in_a * in_b;  // signed, 128-bit result; retimed into the DSP cascade
    for (i = 2; i <= MUL_STAGES; i = i + 1) begin
      q_valid_reg[i] <= q_valid_reg[i-1];
      q_mmio_reg[i] <= q_mmio_reg[i-1];
      q_last_reg[i] <= q_last_reg[i-1];
      q_ok_reg[i] <= q_ok_reg[i-1];
      q_rej_reg[i] <= q_rej_reg[i-1];
      q_kind_reg[i] <= q_kind_reg[i-1];
      q_sym_reg[i] <= q_sym_reg[i-1];
      q_ts_reg[i] <= q_ts_reg[i-1];
      q_seq_reg[i] <= q_seq_reg[i-1];
      q_a_reg[i] <= q_a_reg[i-1];
      q_b_reg[i] <= q_b_reg[i-1];
      q_c_reg[i] <= q_c_reg[i-1];
      q_d_reg[i] <= q_d_reg[i-1];
      q_prod_reg[i] <= q_prod_reg[i-1];
    end
    if (rst) begin
      for (i = 1; i <= MUL_STAGES; i = i + 1) q_valid_reg[i] <= 1'b0;
    end
  end

  // -------------------------------------------------------------------------
  // Symbol state block RAM: one read port (issued from q[MUL_STAGES]), one
  // write port (p2, or the clearing sweep).
  // -------------------------------------------------------------------------
  reg [STATE_W-1:0] state_ram[0:N_SYMBOLS-1];
  reg [STATE_W-1:0] ram_rd_reg;
  wire [SYM_W-1:0] rd_addr = q_sym_reg[MUL_STAGES][SYM_W-1:0];

  always @(posedge clk) begin
    if (q_valid_reg[MUL_STAGES]) ram_rd_reg <= state_ram[rd_addr];
  end

  // p1: the record with its state read back.
  reg p1_valid_reg = 1'b0;
  reg p1_mmio_reg, p1_last_reg, p1_ok_reg;
  reg [3:0] p1_rej_reg;
  reg [7:0] p1_kind_reg;
  reg [31:0] p1_sym_reg;
  reg [63:0] p1_ts_reg, p1_seq_reg, p1_a_reg, p1_b_reg, p1_c_reg, p1_d_reg;
  reg [127:0] p1_prod_reg;

  // p2: the record with its (forwarded) old state.
  reg p2_valid_reg = 1'b0;
  reg p2_mmio_reg, p2_last_reg, p2_ok_reg;
  reg [3:0] p2_rej_reg;
  reg [7:0] p2_kind_reg;
  reg [31:0] p2_sym_reg;
  reg [63:0] p2_ts_reg, p2_seq_reg, p2_a_reg, p2_b_reg, p2_c_reg, p2_d_reg;
  reg [127:0] p2_prod_reg;
  reg [STATE_W-1:0] p2_old_reg;

  // The last state written (the write that raced p1's read).
  reg wb_valid_reg = 1'b0;
  reg [31:0] wb_sym_reg;
  reg [STATE_W-1:0] wb_state_reg;

  // -------------------------------------------------------------------------
  // p2 arithmetic: new state and the feature record.
  // -------------------------------------------------------------------------
  wire p2_trade = (p2_kind_reg == `TF_KIND_TRADE);
  wire old_has_t = p2_old_reg[ST_HAS_T];
  wire [63:0] old_e0 = p2_old_reg[ST_E0+:64];
  wire [63:0] old_e1 = p2_old_reg[ST_E1+:64];
  wire [127:0] old_pv = p2_old_reg[ST_PV+:128];
  wire [63:0] old_vol = p2_old_reg[ST_VOL+:64];

  wire [63:0] px = {p2_a_reg[63-F:0], {F{1'b0}}};
  wire signed [63:0] d0 = px - old_e0;
  wire signed [63:0] d1 = px - old_e1;
  wire signed [63:0] s0 = d0 >>> k0;
  wire signed [63:0] s1 = d1 >>> k1;
  wire [63:0] t_e0 = old_has_t ? old_e0 + s0 : px;
  wire [63:0] t_e1 = old_has_t ? old_e1 + s1 : px;

  reg [STATE_W-1:0] new_state;
  always @* begin
    new_state = p2_old_reg;
    if (p2_trade) begin
      new_state[ST_HAS_T] = 1'b1;
      new_state[ST_LP+:64] = p2_a_reg;
      new_state[ST_LS+:64] = p2_b_reg;
      new_state[ST_E0+:64] = t_e0;
      new_state[ST_E1+:64] = t_e1;
      new_state[ST_PV+:128] = old_pv + p2_prod_reg;
      new_state[ST_VOL+:64] = old_vol + p2_b_reg;
    end else begin
      new_state[ST_HAS_Q] = 1'b1;
      new_state[ST_BP+:64] = p2_a_reg;
      new_state[ST_BS+:64] = p2_b_reg;
      new_state[ST_AP+:64] = p2_c_reg;
      new_state[ST_AS+:64] = p2_d_reg;
    end
  end

  wire p2_write = p2_valid_reg && p2_ok_reg;

  reg [`TF_OUT_W-1:0] feat;
  always @* begin
    feat = {`TF_OUT_W{1'b0}};
    feat[`TF_OUT_TS_NS_LSB+:64] = p2_ts_reg;
    feat[`TF_OUT_SYMBOL_LSB+:32] = p2_sym_reg;
    feat[`TF_OUT_KIND_LSB+:8] = p2_kind_reg;
    feat[`TF_OUT_SEQ_LSB+:64] = p2_seq_reg;
    if (p2_ok_reg) begin
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
      feat[`TF_OUT_FLAGS_LSB+:8] = {4'd0, p2_rej_reg};
    end
  end

  // -------------------------------------------------------------------------
  // p1 -> p2 with forwarding; state write; pipeline registers.
  // -------------------------------------------------------------------------
  reg [STATE_W-1:0] fwd_state;
  always @* begin
    if (p2_write && p2_sym_reg == p1_sym_reg) fwd_state = new_state;
    else if (wb_valid_reg && wb_sym_reg == p1_sym_reg) fwd_state = wb_state_reg;
    else fwd_state = ram_rd_reg;
  end

  always @(posedge clk) begin
    p1_valid_reg <= q_valid_reg[MUL_STAGES];
    p1_mmio_reg <= q_mmio_reg[MUL_STAGES];
    p1_last_reg <= q_last_reg[MUL_STAGES];
    p1_ok_reg <= q_ok_reg[MUL_STAGES];
    p1_rej_reg <= q_rej_reg[MUL_STAGES];
    p1_kind_reg <= q_kind_reg[MUL_STAGES];
    p1_sym_reg <= q_sym_reg[MUL_STAGES];
    p1_ts_reg <= q_ts_reg[MUL_STAGES];
    p1_seq_reg <= q_seq_reg[MUL_STAGES];
    p1_a_reg <= q_a_reg[MUL_STAGES];
    p1_b_reg <= q_b_reg[MUL_STAGES];
    p1_c_reg <= q_c_reg[MUL_STAGES];
    p1_d_reg <= q_d_reg[MUL_STAGES];
    p1_prod_reg <= q_prod_reg[MUL_STAGES];

    p2_valid_reg <= p1_valid_reg;
    p2_mmio_reg <= p1_mmio_reg;
    p2_last_reg <= p1_last_reg;
    p2_ok_reg <= p1_ok_reg;
    p2_rej_reg <= p1_rej_reg;
    p2_kind_reg <= p1_kind_reg;
    p2_sym_reg <= p1_sym_reg;
    p2_ts_reg <= p1_ts_reg;
    p2_seq_reg <= p1_seq_reg;
    p2_a_reg <= p1_a_reg;
    p2_b_reg <= p1_b_reg;
    p2_c_reg <= p1_c_reg;
    p2_d_reg <= p1_d_reg;
    p2_prod_reg <= p1_prod_reg;
    p2_old_reg <= fwd_state;

    wb_valid_reg <= p2_write;
    wb_sym_reg <= p2_sym_reg;
    wb_state_reg <= new_state;

    if (sweep_reg) state_ram[sweep_addr_reg] <= {STATE_W{1'b0}};
    else if (p2_write) state_ram[p2_sym_reg[SYM_W-1:0]] <= new_state;

    if (rst) begin
      p1_valid_reg <= 1'b0;
      p2_valid_reg <= 1'b0;
      wb_valid_reg <= 1'b0;
    end
  end

  // -------------------------------------------------------------------------
  // Output FIFO (first word fall-through) and the MMIO result register.
  // -------------------------------------------------------------------------
  reg [`TF_OUT_W:0] fifo_mem[0:OUT_FIFO_DEPTH-1];  // {last, data}
  reg [FIFO_AW-1:0] fifo_wr_reg = 0, fifo_rd_reg = 0;

  wire fifo_push = p2_valid_reg && !p2_mmio_reg;
  wire m_fire = m_axis_tvalid && m_axis_tready;
  assign m_axis_tvalid = (fifo_count_reg != 0);
  assign m_axis_tdata = fifo_mem[fifo_rd_reg][`TF_OUT_W-1:0];
  assign m_axis_tlast = fifo_mem[fifo_rd_reg][`TF_OUT_W];
  assign m_axis_tkeep = {(`TF_OUT_W / 8) {1'b1}};

  wire mmio_capture = p2_valid_reg && p2_mmio_reg;
  reg [`TF_OUT_W-1:0] mmio_out_reg;
  assign mmio_out = mmio_out_reg;

  always @(posedge clk) begin
    if (fifo_push) begin
      fifo_mem[fifo_wr_reg] <= {p2_last_reg, feat};
      fifo_wr_reg <= fifo_wr_reg + 1'b1;
    end
    if (m_fire) fifo_rd_reg <= fifo_rd_reg + 1'b1;
    if (mmio_capture) mmio_out_reg <= feat;
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
    fifo_count_next = fifo_count_reg + {{FIFO_AW{1'b0}}, fifo_push} - {{FIFO_AW{1'b0}}, m_fire};
    inflight_next = inflight_reg + {7'd0, in_fire} - {7'd0, p2_valid_reg};
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
