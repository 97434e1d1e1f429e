// Tick-features core: per-symbol streaming features, one record per clock.
//
// Input: one 64-byte slot per s_axis beat (a TRADE or QUOTE wire record with a
// kind tag, see tick_features_fields.vh and docs/fpga.md).  Output: one
// 128-byte feature record per m_axis beat, in input order, TLAST preserved.
//
// Pipeline (no stalls once a record is accepted; back-pressure is handled by
// admitting a record only while a credit counter says the output buffer has
// room for it and for every record already in flight):
//
//   in -> q[1]        the record (and the k selections, sampled here: a K
//                     write applies to the records accepted after it)
//      -> q[2]        16 partial products 16x16 of price*size (DSP, registered);
//                     kind and symbol range checked from the q[1] registers
//      -> q[3..M]     partial-product sums; the symbol's state is read from
//                     block RAM with the address of q[M-2] and arrives in q[M]
//      -> p           the record with the newest state of its symbol (its own
//                     EMA update loop: see "Forwarding")
//      -> s           the new state (registered: the block-RAM write data) and
//                     the record's fields
//      -> out         feature record into the output register (or the buffer
//                     behind it) -> m_axis
//
// Latency from the s_axis handshake to the m_axis handshake is MUL_STAGES + 3
// cycles when m_axis_tready is high; the initiation interval is 1.
//
// Forwarding.  A record reads its symbol's state from block RAM with the
// address of q[M-2]; the writes of the four records ahead of it land later.
// Instead of comparing addresses at the read, every record leaving p
// broadcasts its new state to the records behind it that have the same symbol
// (the ones entering q[M-2], q[M-1], q[M] and p); a record that has received a
// broadcast ignores its block-RAM data.  The match bits and the price
// differences the broadcast needs are computed a cycle early, from registers.
//
// EMA update loop.  The EMAs travel through the pipeline in "u form":
// u = x - ema, with x = price << F of the record itself.  For the next record
// of the same symbol (x'), the EMA after this one is reached in u form as
//     u' = (x' - x) + u - (u >>> k)          (a trade with an EMA)
//     u' = (x' - x) + u                       (a quote: EMA unchanged)
//     u' = (x' - x)                           (a first trade: EMA = x)
// (x' - x) is a register; the loop is: shift, one three-input add.  Selecting
// between "a broadcast arrived" and "keep what you have" is folded into the
// adder's operands (gated to zero), so there is no multiplexer after it.
// The EMA itself, ema = x - u + (u >>> k), is computed beside the loop into s.
// k is one of four per EMA fixed at build time (K0_SET, K1_SET): the shift is
// a 4-way selection of wired shifts (one LUT per bit), not a barrel shifter.
// The operand gating is done a cycle ahead, as synchronous resets of per-
// consumer copies of u (ema_gu_reg, ema_gs_reg, sum_g_reg): each adder sees
// registers only, and each copy drives one consumer (bounded fanout).  The
// 128-bit sum of price*size is two 64-bit carry chains with the carry between
// them kept as a state bit (ST_PVC) and added at the output.

`default_nettype none
`timescale 1ns / 1ps

`include "tick_features_fields.vh"

module tick_features_core #(
    parameter N_SYMBOLS = 4096,  // symbol state entries; symbol ids >= N_SYMBOLS are rejected
    parameter MUL_STAGES = 4,  // stages before the state update (>= 3); 4 keeps every path short
    parameter OUT_FIFO_DEPTH = 16,  // output buffer entries: a power of two >= MUL_STAGES + 4
    parameter [`TF_K_BITS*4-1:0] K0_SET = `TF_K0_SET,  // the four k of EMA 0 (5 bits each)
    parameter [`TF_K_BITS*4-1:0] K1_SET = `TF_K1_SET  // the four k of EMA 1
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
    input  wire [           1:0] k0_sel,  // k of EMA 0 = K0_SET[5*k0_sel +: 5]
    input  wire [           1:0] k1_sel,  // k of EMA 1 = K1_SET[5*k1_sel +: 5]
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
`ifdef FORMAL
    ,
    // Formal only (read_verilog -formal): stream records accepted and not yet
    // delivered on m_axis, from the pipeline's own state.
    output wire [7:0] f_stream_pending
`endif
);

  localparam M = MUL_STAGES;
  localparam SYM_W = (N_SYMBOLS > 1) ? $clog2(N_SYMBOLS) : 1;
  localparam FIFO_AW = $clog2(OUT_FIFO_DEPTH);
  localparam CREDIT_W = FIFO_AW + 1;
  localparam F = `TF_EMA_FRAC_BITS;
  localparam KW = `TF_K_BITS;

  // Symbol state word (block RAM, "e form": the EMAs themselves).
  localparam ST_HAS_T = 0;
  localparam ST_HAS_Q = 1;
  localparam ST_LP = 2;
  localparam ST_LS = ST_LP + 64;
  localparam ST_E0 = ST_LS + 64;
  localparam ST_E1 = ST_E0 + 64;
  localparam ST_PV = ST_E1 + 64;  // 128 bits, with a pending carry into the high half (ST_PVC)
  localparam ST_VOL = ST_PV + 128;
  localparam ST_BP = ST_VOL + 64;
  localparam ST_BS = ST_BP + 64;
  localparam ST_AP = ST_BS + 64;
  localparam ST_AS = ST_AP + 64;
  localparam ST_PVC = ST_AS + 64;  // sum of price*size = PV + (PVC << 64)
  localparam STATE_W = ST_PVC + 1;
  // In the pipeline the same layout holds u = x - ema in ST_E0 / ST_E1 ("u form").

  // Parameter checks (elaboration fails on a bad value).
  generate
    if (MUL_STAGES < 3) begin : g_bad_mul_stages
      initial $fatal(1, "MUL_STAGES must be >= 3");
    end
    if (OUT_FIFO_DEPTH < MUL_STAGES + 4 || (1 << FIFO_AW) != OUT_FIFO_DEPTH) begin : g_bad_fifo
      initial $fatal(1, "OUT_FIFO_DEPTH must be a power of two >= MUL_STAGES + 4");
    end
    if (`TF_IN_TRADE_PRICE_W != 64 || `TF_IN_QUOTE_ASK_SIZE_W != 64 || `TF_IN_TRADE_SYMBOL_W != 32)
    begin : g_bad_fields
      initial $fatal(1, "tick_features_fields.vh: unexpected field widths");
    end
  endgenerate

  function [63:0] xof(input [63:0] a);  // price << F (64-bit, wrapping)
    xof = {a[63-F:0], {F{1'b0}}};
  endfunction

  // -------------------------------------------------------------------------
  // Admission.  credit = buffer entries not yet promised to a record; a
  // record needs one.  All the terms of can_accept are registers.
  // -------------------------------------------------------------------------
  reg [CREDIT_W-1:0] credit_reg = OUT_FIFO_DEPTH, credit_next;
  reg credit_nz_reg = 1'b1;
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
  reg s_sweep_reg = 1'b0;  // the s stage holds a clearing write
  reg clear_counters_reg = 1'b0;  // the first cycle of the sweep

  wire can_accept = enable && !reset_pending_reg && !sweep_reg && !s_sweep_reg && credit_nz_reg;
  wire inject_mmio = can_accept && mmio_pending_reg;
  assign s_axis_tready = can_accept && !mmio_pending_reg;
  wire s_fire = s_axis_tvalid && s_axis_tready;
  wire in_fire = s_fire || inject_mmio;

  // The data select is a register: while an MMIO record is pending the
  // stream is not ready, so its data is not needed.
  wire [`TF_IN_W-1:0] in_data = mmio_pending_reg ? mmio_in : s_axis_tdata;
  wire in_last = mmio_pending_reg ? 1'b0 : s_axis_tlast;
  wire [7:0] in_kind = in_data[`TF_IN_KIND_LSB+:8];
  wire [31:0] in_sym = in_data[`TF_IN_TRADE_SYMBOL_LSB+:32];
  wire [63:0] in_a = in_data[`TF_IN_TRADE_PRICE_LSB+:64];  // price or bid_price
  wire [63:0] in_b = in_data[`TF_IN_TRADE_SIZE_LSB+:64];  // size or bid_size
  wire [63:0] in_c = in_data[`TF_IN_QUOTE_ASK_PRICE_LSB+:64];  // ask_price
  wire [63:0] in_d = in_data[`TF_IN_QUOTE_ASK_SIZE_LSB+:64];  // ask_size

  // -------------------------------------------------------------------------
  // q[1..M]: the record.
  // -------------------------------------------------------------------------
  reg q_valid_reg[1:M];
  reg q_mmio_reg[1:M];
  reg q_last_reg[1:M];
  // Checked from the q[1] registers into q[2] (not from the input port).
  reg q_ok_reg[2:M];
  reg q_trade_reg[2:M];
  reg [3:0] q_rej_reg[2:M];  // FLAG_BAD_* bits
  reg [7:0] q_kind_reg[1:M];
  reg [31:0] q_sym_reg[1:M];
  reg [63:0] q_ts_reg[1:M];
  reg [63:0] q_seq_reg[2:M];
  reg [63:0] q_a_reg[1:M];
  reg [63:0] q_b_reg[1:M];
  reg [63:0] q_c_reg[1:M];
  reg [63:0] q_d_reg[1:M];
  // A quote's own features, computed from the input: {imb_den, imb_num, spread, mid_x2}.
  reg [255:0] q_qf_reg[1:M];
  reg [1:0] q_k0_reg[1:M];  // k selections (indices into K0_SET / K1_SET)
  reg [1:0] q_k1_reg[1:M];

  wire q1_kind_ok = (q_kind_reg[1] == `TF_KIND_TRADE) || (q_kind_reg[1] == `TF_KIND_QUOTE);
  wire q1_sym_out = q_sym_reg[1] >= N_SYMBOLS;

  integer i;
  initial begin
    for (i = 1; i <= M; i = i + 1) q_valid_reg[i] = 1'b0;
  end

  always @(posedge clk) begin
    q_valid_reg[1] <= in_fire;
    q_mmio_reg[1] <= inject_mmio;
    q_last_reg[1] <= in_last;
    q_ok_reg[2] <= q1_kind_ok && !q1_sym_out;
    q_trade_reg[2] <= (q_kind_reg[1] == `TF_KIND_TRADE);
    q_rej_reg[2] <= (!q1_kind_ok ? `TF_FLAG_BAD_KIND : 4'd0) |
        (q1_kind_ok && q1_sym_out ? `TF_FLAG_BAD_SYMBOL : 4'd0);
    q_kind_reg[1] <= in_kind;
    q_sym_reg[1] <= in_sym;
    q_ts_reg[1] <= in_data[`TF_IN_TRADE_TS_NS_LSB+:64];
    q_seq_reg[2] <= records_in_reg;  // records that passed q[1] before this one
    q_a_reg[1] <= in_a;
    q_b_reg[1] <= in_b;
    q_c_reg[1] <= in_data[`TF_IN_QUOTE_ASK_PRICE_LSB+:64];
    q_d_reg[1] <= in_data[`TF_IN_QUOTE_ASK_SIZE_LSB+:64];
    q_qf_reg[1] <= {in_b + in_d, in_b - in_d, in_c - in_a, in_a + in_c};
    q_k0_reg[1] <= k0_sel;
    q_k1_reg[1] <= k1_sel;
    for (i = 3; i <= M; i = i + 1) begin
      q_ok_reg[i] <= q_ok_reg[i-1];
      q_trade_reg[i] <= q_trade_reg[i-1];
      q_rej_reg[i] <= q_rej_reg[i-1];
      q_seq_reg[i] <= q_seq_reg[i-1];
    end
    for (i = 2; i <= M; i = i + 1) begin
      q_valid_reg[i] <= q_valid_reg[i-1];
      q_mmio_reg[i] <= q_mmio_reg[i-1];
      q_last_reg[i] <= q_last_reg[i-1];
      q_kind_reg[i] <= q_kind_reg[i-1];
      q_sym_reg[i] <= q_sym_reg[i-1];
      q_ts_reg[i] <= q_ts_reg[i-1];
      q_a_reg[i] <= q_a_reg[i-1];
      q_b_reg[i] <= q_b_reg[i-1];
      q_c_reg[i] <= q_c_reg[i-1];
      q_d_reg[i] <= q_d_reg[i-1];
      q_qf_reg[i] <= q_qf_reg[i-1];
      q_k0_reg[i] <= q_k0_reg[i-1];
      q_k1_reg[i] <= q_k1_reg[i-1];
    end
    if (rst) begin
      // (ok and trade also stay out of shift registers: they gate the update.)
      for (i = 1; i <= M; i = i + 1) q_valid_reg[i] <= 1'b0;
      for (i = 2; i <= M; i = i + 1) begin
        q_ok_reg[i] <= 1'b0;
        q_trade_reg[i] <= 1'b0;
      end
    end
  end

  // -------------------------------------------------------------------------
  // price * size: signed 64 x 64 -> 128 (wrapping), from unsigned 16 x 16
  // partial products.  Signed = unsigned - 2^64 (a<0 ? b : 0) - 2^64 (b<0 ? a : 0).
  // q[2]: partial products (one DSP each) and the sign correction;
  // q[3]: four rows (M >= 4); q[4]: two halves; p: the product.
  // -------------------------------------------------------------------------
  // Partial product n = 4*i+j is a[16i +: 16] * b[16j +: 16], in pp_reg[32n +: 32]
  // (one DSP each).  Its operands are registered for that multiplier alone
  // (its input registers): q_a/q_b also go elsewhere.  Two register stages
  // either way: the operand registers (q[1]) and the product register (q[2]).
`ifdef TF_XILINX_DSP48E2
  // UltraScale+ synthesis (timing.py's xcup flow defines TF_XILINX_DSP48E2):
  // Yosys packs no register into a DSP48E2, so the multipliers are
  // instantiated with their registers: AREG = BREG = 1 (the operand
  // registers), MREG = 0, PREG = 1 (the product register).  A -2 DSP48E2
  // runs this two-register multiply without MREG at 544 MHz (DS925,
  // FMAX_MULT_NOMREG); fabric -> A/B register and P register -> fabric are
  // register-to-register paths of their own.  Unsigned 16 x 16: the operands
  // are zero-extended into the signed 27 x 18 multiplier (A is 30 bits, B 18).
  // Simulation, the formal check and ECP5 use the behavioural code below.
  wire [511:0] pp_reg;
  reg [63:0] corr2_reg;
  always @(posedge clk) begin
    corr2_reg <= (q_a_reg[1][63] ? q_b_reg[1] : 64'd0) + (q_b_reg[1][63] ? q_a_reg[1] : 64'd0);
  end
  genvar gdsp;
  generate
    for (gdsp = 0; gdsp < 16; gdsp = gdsp + 1) begin : g_pp_dsp
      wire [47:0] p_w;
      DSP48E2 #(
          .AREG(1),
          .ACASCREG(1),
          .BREG(1),
          .BCASCREG(1),
          .MREG(0),
          .PREG(1),
          .ADREG(0),
          .DREG(0),
          .CREG(0),
          .INMODEREG(0),
          .OPMODEREG(0),
          .ALUMODEREG(0),
          .CARRYINREG(0),
          .CARRYINSELREG(0),
          .A_INPUT("DIRECT"),
          .B_INPUT("DIRECT"),
          .AMULTSEL("A"),
          .BMULTSEL("B"),
          .PREADDINSEL("A"),
          .USE_MULT("MULTIPLY"),
          .USE_SIMD("ONE48"),
          .USE_PATTERN_DETECT("NO_PATDET")
      ) u_pp (
          .CLK(clk),
          .A({14'd0, in_a[16*(gdsp/4)+:16]}),
          .B({2'd0, in_b[16*(gdsp%4)+:16]}),
          .C(48'd0),
          .D(27'd0),
          .ACIN(30'd0),
          .BCIN(18'd0),
          .PCIN(48'd0),
          .CARRYCASCIN(1'b0),
          .MULTSIGNIN(1'b0),
          .CARRYIN(1'b0),
          .CARRYINSEL(3'b000),
          .INMODE(5'b00000),  // A2 and B2 (the registers) into the multiplier
          .OPMODE(9'b00_000_01_01),  // W = 0, Z = 0, Y:X = M: P = A * B
          .ALUMODE(4'b0000),  // Z + W + X + Y + CIN
          .CEA1(1'b0),
          .CEA2(1'b1),
          .CEB1(1'b0),
          .CEB2(1'b1),
          .CEAD(1'b0),
          .CED(1'b0),
          .CEC(1'b0),
          .CEM(1'b0),
          .CEP(1'b1),
          .CEINMODE(1'b0),
          .CECTRL(1'b0),
          .CEALUMODE(1'b0),
          .CECARRYIN(1'b0),
          .RSTA(1'b0),
          .RSTB(1'b0),
          .RSTC(1'b0),
          .RSTD(1'b0),
          .RSTM(1'b0),
          .RSTP(1'b0),
          .RSTINMODE(1'b0),
          .RSTCTRL(1'b0),
          .RSTALUMODE(1'b0),
          .RSTALLCARRYIN(1'b0),
          .P(p_w)
      );
      assign pp_reg[32*gdsp+:32] = p_w[31:0];
    end
  endgenerate
`else
  reg [511:0] pp_reg;
  reg [63:0] corr2_reg;
  (* keep *) reg [255:0] mul_a_reg;  // slice i of a for product n, at 16n
  (* keep *) reg [255:0] mul_b_reg;  // slice j of b for product n
  integer pi, pj;
  always @(posedge clk) begin
    for (pi = 0; pi < 4; pi = pi + 1)
    for (pj = 0; pj < 4; pj = pj + 1) begin
      mul_a_reg[16*(4*pi+pj)+:16] <= in_a[16*pi+:16];
      mul_b_reg[16*(4*pi+pj)+:16] <= in_b[16*pj+:16];
    end
  end
  always @(posedge clk) begin
    for (pi = 0; pi < 16; pi = pi + 1)
    pp_reg[32*pi+:32] <= mul_a_reg[16*pi+:16] * mul_b_reg[16*pi+:16];
    corr2_reg <= (q_a_reg[1][63] ? q_b_reg[1] : 64'd0) + (q_b_reg[1][63] ? q_a_reg[1] : 64'd0);
  end
`endif

  // Row i: sum over j of pp[i][j] << 16j; the even and odd partial products
  // do not overlap, so a row is one 80-bit addition.
  wire [79:0] row_w[0:3];
  genvar gr;
  generate
    for (gr = 0; gr < 4; gr = gr + 1) begin : g_row
      assign row_w[gr] = {16'd0, pp_reg[32*(4*gr+2)+:32], pp_reg[32*(4*gr+0)+:32]} +
          {pp_reg[32*(4*gr+3)+:32], pp_reg[32*(4*gr+1)+:32], 16'd0};
    end
  endgenerate

  wire [95:0] half_lo_mq, half_hi_mq;  // the two halves at q[M]
  generate
    if (M >= 4) begin : g_mul4
      reg [79:0] row_reg[0:3];
      reg [63:0] corr3_reg;
      reg [95:0] half_lo_reg[4:M];
      reg [95:0] half_hi_reg[4:M];
      integer r;
      always @(posedge clk) begin
        for (r = 0; r < 4; r = r + 1) row_reg[r] <= row_w[r];
        corr3_reg <= corr2_reg;
        half_lo_reg[4] <= {16'd0, row_reg[0]} + {row_reg[1], 16'd0};
        half_hi_reg[4] <= {16'd0, row_reg[2]} + {row_reg[3], 16'd0} - {corr3_reg, 32'd0};
        for (r = 5; r <= M; r = r + 1) begin
          half_lo_reg[r] <= half_lo_reg[r-1];
          half_hi_reg[r] <= half_hi_reg[r-1];
        end
      end
      assign half_lo_mq = half_lo_reg[M];
      assign half_hi_mq = half_hi_reg[M];
    end else begin : g_mul3
      reg [95:0] half_lo_reg, half_hi_reg;
      always @(posedge clk) begin
        half_lo_reg <= {16'd0, row_w[0]} + {row_w[1], 16'd0};
        half_hi_reg <= {16'd0, row_w[2]} + {row_w[3], 16'd0} - {corr2_reg, 32'd0};
      end
      assign half_lo_mq = half_lo_reg;
      assign half_hi_mq = half_hi_reg;
    end
  endgenerate

  // -------------------------------------------------------------------------
  // Symbol state block RAM: read with the address of q[M-2] (the data is
  // valid while the record is in q[M-1]), written from the s registers.
  // -------------------------------------------------------------------------
  reg [STATE_W-1:0] state_ram[0:N_SYMBOLS-1];
  reg [STATE_W-1:0] ram_rd_reg;
  always @(posedge clk) begin
    if (q_valid_reg[M-2]) ram_rd_reg <= state_ram[q_sym_reg[M-2][SYM_W-1:0]];
  end

  // -------------------------------------------------------------------------
  // p: the record and its newest state (u form).
  // -------------------------------------------------------------------------
  reg p_valid_reg = 1'b0;
  reg p_mmio_reg, p_last_reg, p_ok_reg, p_trade_reg;
  reg [3:0] p_rej_reg;
  reg [7:0] p_kind_reg;
  reg [31:0] p_sym_reg;
  reg [63:0] p_ts_reg, p_seq_reg, p_a_reg, p_b_reg, p_c_reg, p_d_reg;
  reg [1:0] p_k0_reg, p_k1_reg;
  reg [127:0] p_prod_reg;  // price * size of a trade, 0 for a quote
  reg [63:0] p_size_reg;  // size of a trade, 0 for a quote
  // The quote features of the record's own quote (used when it is a quote).
  reg [63:0] p_qmid_reg, p_qspread_reg, p_qimb_num_reg, p_qimb_den_reg;
  reg [STATE_W-1:0] p_st_reg;

  wire p_bcast = p_valid_reg && p_ok_reg;  // this record's state goes to those behind it
  wire p_has_t = p_st_reg[ST_HAS_T];
  wire p_use_u = !(p_trade_reg && !p_has_t);  // the old EMA is kept or updated
  wire p_use_s = p_trade_reg && p_has_t;  // the EMA moves by (x - ema) >>> k
  wire [63:0] p_x = xof(p_a_reg);
  wire [63:0] p_u0 = p_st_reg[ST_E0+:64];
  wire [63:0] p_u1 = p_st_reg[ST_E1+:64];

  // The shift u >>> k with k one of the four of the build: a 4-way selection
  // of fixed shifts (wiring), one LUT6 per bit (a multiplexer tree on the
  // select bits, not a decoded case).
  function [63:0] shr4(input [63:0] v, input [1:0] sel, input [KW*4-1:0] set);
    reg [63+31:0] e;
    reg [63:0] s0, s1, s2, s3;
    begin
      e  = {{31{v[63]}}, v};
      s0 = e[set[0*KW+:KW]+:64];
      s1 = e[set[1*KW+:KW]+:64];
      s2 = e[set[2*KW+:KW]+:64];
      s3 = e[set[3*KW+:KW]+:64];
      shr4 = sel[1] ? (sel[0] ? s3 : s2) : (sel[0] ? s1 : s0);
    end
  endfunction

  // Gated copies of the EMA loop registers, one pair per consumer: c = 0..3
  // the broadcast targets (below), c = 4 the record's own new state.
  // gu = u where the consumer adds u, else 0; gs = u where it subtracts
  // u >>> k, else 0.  The gates are known a cycle ahead and applied as the
  // registers' synchronous resets, so the loop's adders see no gating logic
  // and each copy drives only its own consumer (fanout bounded).
  reg [127:0] ema_gu_reg[0:4];  // {u1, u0}
  reg [127:0] ema_gs_reg[0:4];
  // Likewise the sums {vol, pv} for targets 0..3 (hit ? old sums : 0).
  reg [192:0] sum_g_reg[0:3];
  wire [127:0] gu4 = ema_gu_reg[4], gs4 = ema_gs_reg[4];

  // a + b + c + cin (64-bit, wrapping) as a carry-save step and one carry
  // chain: the per-bit sum and majority are one LUT level.
  function [63:0] add3(input [63:0] a, input [63:0] b, input [63:0] c, input cin);
    reg [63:0] sum, maj;
    begin
      sum = a ^ b ^ c;
      maj = (a & b) | (a & c) | (b & c);
      add3 = sum + {maj[62:0], cin};
    end
  endfunction

  // The 128-bit sums as two 64-bit carry chains: the carry out of the low
  // half is kept as a bit (ST_PVC) and added into the high half by the next
  // addition (or at the output), never carried across 128 bits in one cycle.
  // {c, s} = a + ac<<64 + b + bc<<64 - (c<<64): ac and bc are never both 1.
  function [128:0] pvadd(input [127:0] a, input ac, input [127:0] b, input bc);
    reg [64:0] lo, hi;
    begin
      lo = {1'b0, a[63:0]} + {1'b0, b[63:0]};
      hi = {a[127:64], 1'b1} + {b[127:64], ac | bc};  // a + b + cin, one chain
      pvadd = {lo[64], hi[64:1], lo[63:0]};
    end
  endfunction

  // The new state (e form) of this record's symbol.
  reg [STATE_W-1:0] p_new;
  always @* begin
    p_new = p_st_reg;
    // x - u + s as one three-input addition: x + ~u + s + 1 (~0 + 1 = -0).
    p_new[ST_E0+:64] = add3(p_x, ~gu4[63:0], shr4(gs4[63:0], p_k0_reg, K0_SET), 1'b1);
    p_new[ST_E1+:64] = add3(p_x, ~gu4[127:64], shr4(gs4[127:64], p_k1_reg, K1_SET), 1'b1);
    // (p_prod_reg and p_size_reg are zero for a quote: no selection.)
    {p_new[ST_PVC], p_new[ST_PV+:128]} = pvadd(p_st_reg[ST_PV+:128], p_st_reg[ST_PVC], p_prod_reg,
                                               1'b0);
    p_new[ST_VOL+:64] = p_st_reg[ST_VOL+:64] + p_size_reg;
    if (p_trade_reg) begin
      p_new[ST_HAS_T] = 1'b1;
      p_new[ST_LP+:64] = p_a_reg;
      p_new[ST_LS+:64] = p_b_reg;
    end else begin
      p_new[ST_HAS_Q] = 1'b1;
      p_new[ST_BP+:64] = p_a_reg;
      p_new[ST_BS+:64] = p_b_reg;
      p_new[ST_AP+:64] = p_c_reg;
      p_new[ST_AS+:64] = p_d_reg;
    end
  end


  // Broadcast of this record's state (u form) into a younger record with
  // x = x_younger: prev is what it holds, hit says whether it has this
  // symbol, dx = x_younger - x_p (a register), gu / gs the target's gated
  // copies of u (zero unless hit).  E = (hit ? dx : prev) + gu - (gs >>> k):
  // with hit low the result is prev (0 + ~0 + 1 = 0).
  function [STATE_W-1:0] bcast(input [STATE_W-1:0] prev, input hit, input [63:0] dx,
                               input [127:0] gu, input [127:0] gs, input [192:0] gsum);
    begin
      bcast = hit ? p_new : prev;
      bcast[ST_E0+:64] = add3(hit ? dx : prev[ST_E0+:64], gu[63:0],
                              ~shr4(gs[63:0], p_k0_reg, K0_SET), 1'b1);
      bcast[ST_E1+:64] = add3(hit ? dx : prev[ST_E1+:64], gu[127:64],
                              ~shr4(gs[127:64], p_k1_reg, K1_SET), 1'b1);
      // The sums: gsum = {pvc, vol, pv} of this record's old state where hit, else 0.
      {bcast[ST_PVC], bcast[ST_PV+:128]} = pvadd(hit ? p_prod_reg : prev[ST_PV+:128],
                                                 !hit && prev[ST_PVC], gsum[127:0], gsum[192]);
      bcast[ST_VOL+:64] = (hit ? p_size_reg : prev[ST_VOL+:64]) + gsum[191:128];
    end
  endfunction

  // Broadcast targets: t = 0..3 are the registers of q[M-2], q[M-1], q[M]
  // and p.  hit[t] and dx[t] belong to the record being loaded into target t
  // and the record now in p; they are registers, computed one cycle early
  // from the record two stages before the target and the record in q[M]
  // (for t = 0 with M = 3 that record is the input: computed in place).
  reg [3:0] hit_reg = 4'd0;
  reg [63:0] dx_reg[0:3];
  wire [3:0] hit;
  wire [63:0] dx[0:3];
  wire q_m_bcast = q_valid_reg[M] && q_ok_reg[M];
  wire [SYM_W-1:0] q_m_sym = q_sym_reg[M][SYM_W-1:0];
  // The records two stages before targets 0 and 1 (stage 0 is the input).
  wire [SYM_W-1:0] src0_sym, src1_sym;
  wire [63:0] src0_a, src1_a;
  generate
    if (M >= 5) begin : g_src0_q
      assign src0_sym = q_sym_reg[M-4][SYM_W-1:0];
      assign src0_a = q_a_reg[M-4];
    end else begin : g_src0_in
      assign src0_sym = in_sym[SYM_W-1:0];
      assign src0_a = in_a;
    end
    if (M >= 4) begin : g_src1_q
      assign src1_sym = q_sym_reg[M-3][SYM_W-1:0];
      assign src1_a = q_a_reg[M-3];
    end else begin : g_src1_in
      assign src1_sym = in_sym[SYM_W-1:0];
      assign src1_a = in_a;
    end
  endgenerate

  // hit in the next cycle (the D of hit_reg), also the gates of ema_g*_reg.
  wire [3:0] hit_next;
  // Target t is stage M-2+t; its record is now in stage M-4+t.
  assign hit_next[0] = q_m_bcast && (src0_sym == q_m_sym);
  assign hit_next[1] = q_m_bcast && (src1_sym == q_m_sym);
  assign hit_next[2] = q_m_bcast && (q_sym_reg[M-2][SYM_W-1:0] == q_m_sym);
  assign hit_next[3] = q_m_bcast && (q_sym_reg[M-1][SYM_W-1:0] == q_m_sym);
  always @(posedge clk) begin
    hit_reg <= hit_next;
    dx_reg[0] <= xof(src0_a) - xof(q_a_reg[M]);
    dx_reg[1] <= xof(src1_a) - xof(q_a_reg[M]);
    dx_reg[2] <= xof(q_a_reg[M-2]) - xof(q_a_reg[M]);
    dx_reg[3] <= xof(q_a_reg[M-1]) - xof(q_a_reg[M]);
    if (rst) hit_reg <= 4'd0;
  end
  generate
    if (M >= 4) begin : g_hit0_reg
      assign hit[0] = hit_reg[0];
      assign dx[0] = dx_reg[0];
    end else begin : g_hit0_comb
      assign hit[0] = p_bcast && (in_sym[SYM_W-1:0] == p_sym_reg[SYM_W-1:0]);
      assign dx[0] = xof(in_a) - p_x;
    end
  endgenerate
  assign hit[3:1] = hit_reg[3:1];
  assign dx[1] = dx_reg[1];
  assign dx[2] = dx_reg[2];
  assign dx[3] = dx_reg[3];

  // Forwarded state held by targets 0..2 (u form) and whether any arrived.
  reg [STATE_W-1:0] fwd_reg[0:2];
  reg [2:0] fwd_has_reg = 3'd0;
  // The block-RAM data of the record in q[M], converted to u form.
  reg [STATE_W-1:0] ram_u_reg;

  wire [63:0] x_qm1 = xof(q_a_reg[M-1]);
  reg [STATE_W-1:0] ram_u_next;
  always @* begin
    ram_u_next = ram_rd_reg;
    ram_u_next[ST_E0+:64] = x_qm1 - ram_rd_reg[ST_E0+:64];
    ram_u_next[ST_E1+:64] = x_qm1 - ram_rd_reg[ST_E1+:64];
  end

  // What the record entering p holds without a broadcast from the record in p.
  // The two selects of it (fwd_has_reg[2], hit_reg[3]) drive every bit of
  // the state entering p: each has three replicas, and each of the four
  // copies selects one part of the word (fanout about 180 instead of 707).
  // The replicas differ in their initial or reset value (a don't-care: they
  // are loaded every cycle and nothing is accepted during a reset), which
  // keeps synthesis from merging them back into one register.
  reg fh_r1 = 1'b0, fh_r2 = 1'b1, fh_r3 = 1'b1;  // replicas of fwd_has_reg[2]
  reg h3_r1 = 1'b0, h3_r2 = 1'b1, h3_r3 = 1'b1;  // replicas of hit_reg[3]
  always @(posedge clk) begin
    fh_r1 <= fwd_has_reg[1] | hit[2];
    fh_r2 <= fwd_has_reg[1] | hit[2];
    fh_r3 <= rst ? 1'b1 : fwd_has_reg[1] | hit[2];
    h3_r1 <= hit_next[3];
    h3_r2 <= hit_next[3];
    h3_r3 <= rst ? 1'b1 : hit_next[3];
  end
  wire [3:0] fh_sel = {fh_r3, fh_r2, fh_r1, fwd_has_reg[2]};
  wire [3:0] h3_sel = {h3_r3, h3_r2, h3_r1, hit[3]};
  // Part g of the word: [0, ST_E0), the EMAs, the sums, the quote and the carry bit.
  wire [STATE_W-1:0] p_prev_g[0:3], p_next_g[0:3];
  genvar gp;
  generate
    for (gp = 0; gp < 4; gp = gp + 1) begin : g_p_part
      assign p_prev_g[gp] = fh_sel[gp] ? fwd_reg[2] : ram_u_reg;
      assign p_next_g[gp] = bcast(p_prev_g[gp], h3_sel[gp], dx[3], ema_gu_reg[3], ema_gs_reg[3],
                                  sum_g_reg[3]);
    end
  endgenerate
  wire [STATE_W-1:0] p_prev = p_prev_g[0];
  // The state of the record entering p (the EMA loop closes here).
  wire [STATE_W-1:0] p_next = {
    p_next_g[3][STATE_W-1:ST_BP],
    p_next_g[2][ST_BP-1:ST_PV],
    p_next_g[1][ST_PV-1:ST_E0],
    p_next_g[0][ST_E0-1:0]
  };

  // The gates of the next cycle: the record entering p adds its old u unless
  // it is the symbol's first trade, and subtracts u >>> k if it is a later trade.
  wire nx_trade = q_trade_reg[M];
  wire nx_has_t = hit[3] ? (p_has_t || p_trade_reg) : p_prev[ST_HAS_T];
  wire nx_use_u = !(nx_trade && !nx_has_t);
  wire nx_use_s = nx_trade && nx_has_t;
  wire [127:0] nx_u = {p_next[ST_E1+:64], p_next[ST_E0+:64]};
  wire [192:0] nx_sums = {p_next[ST_PVC], p_next[ST_VOL+:64], p_next[ST_PV+:128]};
  integer gc;
  always @(posedge clk) begin
    for (gc = 0; gc < 4; gc = gc + 1) begin
      ema_gu_reg[gc] <= (hit_next[gc] && nx_use_u && !rst) ? nx_u : 128'd0;
      ema_gs_reg[gc] <= (hit_next[gc] && nx_use_s && !rst) ? nx_u : 128'd0;
      sum_g_reg[gc] <= (hit_next[gc] && !rst) ? nx_sums : 193'd0;
    end
    ema_gu_reg[4] <= nx_use_u ? nx_u : 128'd0;
    ema_gs_reg[4] <= nx_use_s ? nx_u : 128'd0;
  end

  // Target 0's gated copies: registers, or (MUL_STAGES = 3, hit[0] computed
  // in place from the input) gated here.
  wire [127:0] gu0, gs0;
  wire [192:0] gsum0;
  generate
    if (M >= 4) begin : g_gate0_reg
      assign gu0 = ema_gu_reg[0];
      assign gs0 = ema_gs_reg[0];
      assign gsum0 = sum_g_reg[0];
    end else begin : g_gate0_comb
      assign gu0 = (hit[0] && p_use_u) ? {p_u1, p_u0} : 128'd0;
      assign gs0 = (hit[0] && p_use_s) ? {p_u1, p_u0} : 128'd0;
      assign gsum0 = hit[0] ? {p_st_reg[ST_PVC], p_st_reg[ST_VOL+:64], p_st_reg[ST_PV+:128]} :
          193'd0;
    end
  endgenerate

  always @(posedge clk) begin
    fwd_reg[0] <= bcast({STATE_W{1'b0}}, hit[0], dx[0], gu0, gs0, gsum0);
    fwd_reg[1] <= bcast(fwd_reg[0], hit[1], dx[1], ema_gu_reg[1], ema_gs_reg[1], sum_g_reg[1]);
    fwd_reg[2] <= bcast(fwd_reg[1], hit[2], dx[2], ema_gu_reg[2], ema_gs_reg[2], sum_g_reg[2]);
    fwd_has_reg <= {fwd_has_reg[1] | hit[2], fwd_has_reg[0] | hit[1], hit[0]};
    ram_u_reg <= ram_u_next;
    p_st_reg <= p_next;

    p_valid_reg <= q_valid_reg[M];
    p_mmio_reg <= q_mmio_reg[M];
    p_last_reg <= q_last_reg[M];
    p_ok_reg <= q_ok_reg[M];
    p_trade_reg <= q_trade_reg[M];
    p_rej_reg <= q_rej_reg[M];
    p_kind_reg <= q_kind_reg[M];
    p_sym_reg <= q_sym_reg[M];
    p_ts_reg <= q_ts_reg[M];
    p_seq_reg <= q_seq_reg[M];
    p_a_reg <= q_a_reg[M];
    p_b_reg <= q_b_reg[M];
    p_c_reg <= q_c_reg[M];
    p_d_reg <= q_d_reg[M];
    p_k0_reg <= q_k0_reg[M];
    p_k1_reg <= q_k1_reg[M];
    p_prod_reg <= q_trade_reg[M] ? {half_hi_mq, 32'd0} + {32'd0, half_lo_mq} : 128'd0;
    p_size_reg <= q_trade_reg[M] ? q_b_reg[M] : 64'd0;
    {p_qimb_den_reg, p_qimb_num_reg, p_qspread_reg, p_qmid_reg} <= q_qf_reg[M];
    if (rst) begin
      // Also keeps the p registers out of shift-register (SRL) inference:
      // they select the update, an SRL's clock-to-out is slow.
      p_valid_reg <= 1'b0;
      p_ok_reg <= 1'b0;
      p_trade_reg <= 1'b0;
      p_k0_reg <= 0;
      p_k1_reg <= 0;
      p_a_reg <= 0;
      p_b_reg <= 0;
      p_c_reg <= 0;
      p_d_reg <= 0;
      fwd_has_reg <= 3'd0;
    end
  end

  // -------------------------------------------------------------------------
  // s: the new state (the block-RAM write, from registers) and the record.
  // -------------------------------------------------------------------------
  reg s_valid_reg = 1'b0;
  reg s_mmio_reg, s_last_reg, s_ok_reg;
  reg [3:0] s_rej_reg;
  reg [7:0] s_kind_reg;
  reg [31:0] s_sym_reg;
  reg [63:0] s_ts_reg, s_seq_reg;
  reg [STATE_W-1:0] s_state_reg;
  reg s_wr_reg = 1'b0;
  reg [SYM_W-1:0] s_wr_addr_reg;
  // The quote features, computed from the new state beside the s registers
  // (not between them and the output register).
  // Two candidates each: from the symbol's stored quote (a trade keeps it)
  // and from the record's own quote (computed a stage earlier, in p); the
  // output selects by s_trade_reg.
  reg [63:0] s_mid_reg, s_spread_reg, s_imb_num_reg, s_imb_den_reg;  // stored quote
  reg [63:0] s_qmid_reg, s_qspread_reg, s_qimb_num_reg, s_qimb_den_reg;  // own quote
  reg s_trade_reg;

  always @(posedge clk) begin
    s_valid_reg <= p_valid_reg;
    s_mmio_reg <= p_mmio_reg;
    s_last_reg <= p_last_reg;
    s_ok_reg <= p_ok_reg;
    s_rej_reg <= p_rej_reg;
    s_kind_reg <= p_kind_reg;
    s_sym_reg <= p_sym_reg;
    s_ts_reg <= p_ts_reg;
    s_seq_reg <= p_seq_reg;
    // Zero for a rejected record too (never written to the block RAM then):
    // its output needs no gating after the pv_hi carry below.
    s_state_reg <= (sweep_reg || !p_ok_reg) ? {STATE_W{1'b0}} : p_new;
    // Both candidates from registers, then a selection: a trade keeps the
    // quote fields, a quote brings new ones.
    s_mid_reg <= p_st_reg[ST_BP+:64] + p_st_reg[ST_AP+:64];
    s_spread_reg <= p_st_reg[ST_AP+:64] - p_st_reg[ST_BP+:64];
    s_imb_num_reg <= p_st_reg[ST_BS+:64] - p_st_reg[ST_AS+:64];
    s_imb_den_reg <= p_st_reg[ST_BS+:64] + p_st_reg[ST_AS+:64];
    s_qmid_reg <= p_qmid_reg;
    s_qspread_reg <= p_qspread_reg;
    s_qimb_num_reg <= p_qimb_num_reg;
    s_qimb_den_reg <= p_qimb_den_reg;
    s_trade_reg <= p_trade_reg;
    s_wr_reg <= sweep_reg || p_bcast;
    s_wr_addr_reg <= sweep_reg ? sweep_addr_reg : p_sym_reg[SYM_W-1:0];
    s_sweep_reg <= sweep_reg;
    if (s_wr_reg) state_ram[s_wr_addr_reg] <= s_state_reg;
    if (rst) begin
      // Also keeps these out of shift-register (SRL) inference.
      s_valid_reg <= 1'b0;
      s_mmio_reg <= 1'b0;
      s_last_reg <= 1'b0;
      s_ok_reg <= 1'b0;
      s_wr_reg <= 1'b0;
      s_sweep_reg <= 1'b0;
    end
  end

  reg [`TF_OUT_W-1:0] feat;
  always @* begin
    feat = {`TF_OUT_W{1'b0}};
    feat[`TF_OUT_TS_NS_LSB+:64] = s_ts_reg;
    feat[`TF_OUT_SYMBOL_LSB+:32] = s_sym_reg;
    feat[`TF_OUT_KIND_LSB+:8] = s_kind_reg;
    feat[`TF_OUT_SEQ_LSB+:64] = s_seq_reg;
    if (s_ok_reg) begin
      feat[`TF_OUT_FLAGS_LSB+:8] = {6'd0, s_state_reg[ST_HAS_Q], s_state_reg[ST_HAS_T]};
      feat[`TF_OUT_LAST_PRICE_LSB+:64] = s_state_reg[ST_LP+:64];
      feat[`TF_OUT_LAST_SIZE_LSB+:64] = s_state_reg[ST_LS+:64];
      feat[`TF_OUT_EMA0_LSB+:64] = s_state_reg[ST_E0+:64];
      feat[`TF_OUT_EMA1_LSB+:64] = s_state_reg[ST_E1+:64];
      feat[`TF_OUT_PV_LO_LSB+:64] = s_state_reg[ST_PV+:64];

      feat[`TF_OUT_VOLUME_LSB+:64] = s_state_reg[ST_VOL+:64];
      feat[`TF_OUT_BID_PRICE_LSB+:64] = s_state_reg[ST_BP+:64];
      feat[`TF_OUT_ASK_PRICE_LSB+:64] = s_state_reg[ST_AP+:64];
      feat[`TF_OUT_MID_X2_LSB+:64] = s_trade_reg ? s_mid_reg : s_qmid_reg;
      feat[`TF_OUT_SPREAD_LSB+:64] = s_trade_reg ? s_spread_reg : s_qspread_reg;
      feat[`TF_OUT_IMB_NUM_LSB+:64] = s_trade_reg ? s_imb_num_reg : s_qimb_num_reg;
      feat[`TF_OUT_IMB_DEN_LSB+:64] = s_trade_reg ? s_imb_den_reg : s_qimb_den_reg;
    end else begin
      feat[`TF_OUT_FLAGS_LSB+:8] = {4'd0, s_rej_reg};
    end
    // The pending carry of the sum goes into the high half here (the state is
    // zero for a rejected record, so no gating after the addition).
    feat[`TF_OUT_PV_HI_LSB+:64] = s_state_reg[ST_PV+64+:64] + {63'd0, s_state_reg[ST_PVC]};
  end

  // -------------------------------------------------------------------------
  // Output: a register (m_axis) with a buffer behind it (LUT RAM).  A record
  // goes straight into the register when it and the buffer are empty.
  // -------------------------------------------------------------------------
  reg [`TF_OUT_W:0] fifo_mem[0:OUT_FIFO_DEPTH-1];  // {last, data}
  reg [FIFO_AW-1:0] fifo_wr_reg = 0, fifo_rd_reg = 0;
  reg fifo_empty_reg = 1'b1;
  reg [FIFO_AW:0] fifo_count_reg = 0;
  reg out_valid_reg = 1'b0;
  reg [`TF_OUT_W:0] out_reg;

  wire push = s_valid_reg && !s_mmio_reg;
  wire m_fire = out_valid_reg && m_axis_tready;
  wire out_load = !out_valid_reg || m_axis_tready;
  wire from_fifo = out_load && !fifo_empty_reg;
  wire bypass = out_load && fifo_empty_reg && push;
  wire fifo_push = push && !bypass;
  assign m_axis_tvalid = out_valid_reg;
  assign m_axis_tdata = out_reg[`TF_OUT_W-1:0];
  assign m_axis_tlast = out_reg[`TF_OUT_W];
  assign m_axis_tkeep = {(`TF_OUT_W / 8) {1'b1}};

  wire mmio_capture = s_valid_reg && s_mmio_reg;
  reg [`TF_OUT_W-1:0] mmio_out_reg;
  assign mmio_out = mmio_out_reg;

  // The count moves by one at most: the +1 / -1 values come from the
  // register, the selection after them (no adder behind the handshakes).
  wire fifo_up = fifo_push && !from_fifo;
  wire fifo_down = from_fifo && !fifo_push;
  wire [FIFO_AW:0] fifo_count_next = fifo_up ? fifo_count_reg + 1'b1 :
      fifo_down ? fifo_count_reg - 1'b1 : fifo_count_reg;
  wire fifo_one = (fifo_count_reg == 1);

  always @(posedge clk) begin
    if (fifo_push) begin
      fifo_mem[fifo_wr_reg] <= {s_last_reg, feat};
      fifo_wr_reg <= fifo_wr_reg + 1'b1;
    end
    if (from_fifo) begin
      out_reg <= fifo_mem[fifo_rd_reg];
      fifo_rd_reg <= fifo_rd_reg + 1'b1;
    end else if (bypass) begin
      out_reg <= {s_last_reg, feat};
    end
    if (out_load) out_valid_reg <= from_fifo || push;
    fifo_count_reg <= fifo_count_next;
    fifo_empty_reg <= fifo_up ? 1'b0 : fifo_down ? fifo_one : fifo_empty_reg;
    if (mmio_capture) mmio_out_reg <= feat;
    if (rst) begin
      fifo_wr_reg <= 0;
      fifo_rd_reg <= 0;
      fifo_count_reg <= 0;
      fifo_empty_reg <= 1'b1;
      out_valid_reg <= 1'b0;
    end
  end

  // -------------------------------------------------------------------------
  // Control: credits, soft reset sweep, MMIO handshake, counters.
  // -------------------------------------------------------------------------
  wire pipe_empty = (credit_reg == OUT_FIFO_DEPTH);
  wire credit_one = (credit_reg == 1);
  wire q2_bad_sym = q_valid_reg[2] && q_rej_reg[2][2];  // FLAG_BAD_SYMBOL
  wire q2_bad_kind = q_valid_reg[2] && q_rej_reg[2][3];  // FLAG_BAD_KIND

  always @* begin
    credit_next = credit_reg - {{FIFO_AW{1'b0}}, in_fire} + {{FIFO_AW{1'b0}}, m_fire} +
        {{FIFO_AW{1'b0}}, mmio_capture};
    reset_pending_next = reset_pending_reg || soft_reset;
    sweep_next = sweep_reg;
    sweep_addr_next = sweep_addr_reg;
    mmio_pending_next = mmio_pending_reg;
    mmio_inflight_next = mmio_inflight_reg;
    mmio_done_next = mmio_done_reg;
    // Counted when the record is in q[1] (a register, not the handshake).
    records_in_next = records_in_reg + (q_valid_reg[1] ? 64'd1 : 64'd0);
    records_out_next = records_out_reg + (m_fire ? 64'd1 : 64'd0) + (mmio_capture ? 64'd1 : 64'd0);
    // Rejects are counted two cycles after the record is accepted, from q[2].
    reject_symbol_next = reject_symbol_reg + (q2_bad_sym ? 64'd1 : 64'd0);
    reject_kind_next = reject_kind_reg + (q2_bad_kind ? 64'd1 : 64'd0);

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
      mmio_done_next = 1'b0;
    end
    // The counters clear in the first sweep cycle (nothing is in flight then).
    if (clear_counters_reg) begin
      records_in_next = 0;
      records_out_next = 0;
      reject_symbol_next = 0;
      reject_kind_next = 0;
    end
  end

  always @(posedge clk) begin
    credit_reg <= credit_next;
    // credit_next == 0 without the adder: credits move by -1 .. +2 a cycle.
    credit_nz_reg <= !((credit_one && in_fire && !m_fire && !mmio_capture) ||
                       (!credit_nz_reg && !m_fire && !mmio_capture));
    clear_counters_reg <= sweep_next && !sweep_reg;
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
      credit_reg <= OUT_FIFO_DEPTH;
      credit_nz_reg <= 1'b1;
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

  assign reset_busy = reset_pending_reg || sweep_reg || s_sweep_reg;
  assign idle = pipe_empty && !mmio_pending_reg;
  assign mmio_done = mmio_done_reg;
  assign mmio_busy = mmio_pending_reg || mmio_inflight_reg;
  assign records_in = records_in_reg;
  assign records_out = records_out_reg;
  assign reject_symbol = reject_symbol_reg;
  assign reject_kind = reject_kind_reg;

`ifdef FORMAL
  // Invariants of the bookkeeping (checked, and lemmas for the solver: with
  // them the counting properties of the formal wrapper are local to a step).
  // Every record holding a credit is in exactly one place: q[1..M], p, s,
  // the buffer or the output register.
  reg [7:0] f_all, f_stream;
  integer fi;
  always @* begin
    f_all = {3'd0, fifo_count_reg} + {7'd0, out_valid_reg} + {7'd0, p_valid_reg} + {7'd0, s_valid_reg};
    f_stream = {3'd0, fifo_count_reg} + {7'd0, out_valid_reg} +
        {7'd0, p_valid_reg && !p_mmio_reg} + {7'd0, s_valid_reg && !s_mmio_reg};
    for (fi = 1; fi <= M; fi = fi + 1) begin
      f_all = f_all + {7'd0, q_valid_reg[fi]};
      f_stream = f_stream + {7'd0, q_valid_reg[fi] && !q_mmio_reg[fi]};
    end
  end
  assign f_stream_pending = f_stream;
  reg f_past = 1'b0;
  always @(posedge clk) f_past <= 1'b1;
  always @* begin
    if (f_past && !rst) begin
      assert ({1'b0, credit_reg} + {1'b0, f_all} == OUT_FIFO_DEPTH);
      assert (credit_nz_reg == (credit_reg != 0));
      assert (fifo_empty_reg == (fifo_count_reg == 0));
      assert (fifo_count_reg <= OUT_FIFO_DEPTH);
      assert (fifo_wr_reg - fifo_rd_reg == fifo_count_reg[FIFO_AW-1:0]);
      if (!fifo_empty_reg) assert (out_valid_reg);
    end
  end
`endif

endmodule

`default_nettype wire
