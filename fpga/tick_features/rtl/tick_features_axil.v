// AXI4-Lite control and status registers of the tick-features core.
//
// The register map (offsets, bits) comes from tick_features_fields.vh, which
// is generated from kernels/fixedpoint/layout.py; docs/fpga.md has the table.
// 64-bit counters: reading the _LO word latches the matching _HI word, so a
// LO-then-HI read pair is consistent.

`default_nettype none
`timescale 1ns / 1ps

`include "tick_features_fields.vh"

module tick_features_axil #(
    parameter N_SYMBOLS = 4096,  // reported in the N_SYMBOLS register
    parameter LATENCY = 6,  // reported in CONFIG[15:8]: s_axis to m_axis cycles
    parameter [`TF_K_BITS*4-1:0] K0_SET = `TF_K0_SET,  // the four k EMA 0 accepts (5 bits each)
    parameter [`TF_K_BITS*4-1:0] K1_SET = `TF_K1_SET  // the four k EMA 1 accepts
) (
    input wire clk,
    input wire rst,

    input  wire [`TF_AXIL_ADDR_BITS-1:0] s_axil_awaddr,
    input  wire [                   2:0] s_axil_awprot,
    input  wire                          s_axil_awvalid,
    output wire                          s_axil_awready,
    input  wire [                  31:0] s_axil_wdata,
    input  wire [                   3:0] s_axil_wstrb,
    input  wire                          s_axil_wvalid,
    output wire                          s_axil_wready,
    output wire [                   1:0] s_axil_bresp,
    output wire                          s_axil_bvalid,
    input  wire                          s_axil_bready,
    input  wire [`TF_AXIL_ADDR_BITS-1:0] s_axil_araddr,
    input  wire [                   2:0] s_axil_arprot,
    input  wire                          s_axil_arvalid,
    output wire                          s_axil_arready,
    output wire [                  31:0] s_axil_rdata,
    output wire [                   1:0] s_axil_rresp,
    output wire                          s_axil_rvalid,
    input  wire                          s_axil_rready,

    output wire                  enable,
    output wire [           1:0] k0_sel,  // index of the k in force in K0_SET
    output wire [           1:0] k1_sel,  // index of the k in force in K1_SET
    output wire                  soft_reset,
    output wire                  mmio_submit,
    output wire [  `TF_IN_W-1:0] mmio_in,

    input wire                 reset_busy,
    input wire                 idle,
    input wire                 mmio_done,
    input wire                 mmio_busy,
    input wire [`TF_OUT_W-1:0] mmio_out,
    input wire [         63:0] records_in,
    input wire [         63:0] records_out,
    input wire [         63:0] reject_symbol,
    input wire [         63:0] reject_kind
);

  // Write channel.
  reg aw_hold_reg = 1'b0, aw_hold_next;
  reg [`TF_AXIL_ADDR_BITS-1:0] aw_addr_reg = 0, aw_addr_next;
  reg w_hold_reg = 1'b0, w_hold_next;
  reg [31:0] w_data_reg = 0, w_data_next;
  reg [3:0] w_strb_reg = 0, w_strb_next;
  reg bvalid_reg = 1'b0, bvalid_next;

  // Read channel.
  reg rvalid_reg = 1'b0, rvalid_next;
  reg [31:0] rdata_reg = 0, rdata_next;

  // k: only the four values of a set are accepted (the core's update loop
  // selects among four fixed shifts); a write of any other value is ignored,
  // so the register always reads back the k in force.
  localparam KW = `TF_K_BITS;
  function [2:0] k_index;  // {found, index} of k in a set
    input [KW-1:0] k;
    input [KW*4-1:0] set;
    integer n;
    begin
      k_index = 3'd0;
      for (n = 3; n >= 0; n = n - 1) if (set[KW*n+:KW] == k) k_index = {1'b1, n[1:0]};
    end
  endfunction
  localparam [2:0] K0_RESET_IX = k_index(`TF_K0_RESET, K0_SET);
  localparam [2:0] K1_RESET_IX = k_index(`TF_K1_RESET, K1_SET);
  generate
    if (!K0_RESET_IX[2] || !K1_RESET_IX[2]) begin : g_bad_k_set
      initial $fatal(1, "K0_SET / K1_SET must contain the reset k (TF_K0_RESET / TF_K1_RESET)");
    end
  endgenerate
  wire [2:0] k0_wr_ix = k_index(w_data_reg[KW-1:0], K0_SET);
  wire [2:0] k1_wr_ix = k_index(w_data_reg[KW-1:0], K1_SET);

  // Registers.
  reg enable_reg = 1'b0, enable_next;
  reg [KW-1:0] k0_reg = `TF_K0_RESET, k0_next;
  reg [KW-1:0] k1_reg = `TF_K1_RESET, k1_next;
  reg [1:0] k0_sel_reg = K0_RESET_IX[1:0], k0_sel_next;
  reg [1:0] k1_sel_reg = K1_RESET_IX[1:0], k1_sel_next;
  reg soft_reset_reg = 1'b0, soft_reset_next;
  reg mmio_submit_reg = 1'b0, mmio_submit_next;
  reg [`TF_IN_W-1:0] mmio_in_reg = 0, mmio_in_next;
  reg [31:0] in_hi_reg = 0, in_hi_next;
  reg [31:0] out_hi_reg = 0, out_hi_next;
  reg [31:0] rej_sym_hi_reg = 0, rej_sym_hi_next;
  reg [31:0] rej_kind_hi_reg = 0, rej_kind_hi_next;

  assign s_axil_awready = !aw_hold_reg;
  assign s_axil_wready = !w_hold_reg;
  assign s_axil_bresp = 2'b00;
  assign s_axil_bvalid = bvalid_reg;
  assign s_axil_arready = !rvalid_reg;
  assign s_axil_rdata = rdata_reg;
  assign s_axil_rresp = 2'b00;
  assign s_axil_rvalid = rvalid_reg;

  assign enable = enable_reg;
  assign k0_sel = k0_sel_reg;
  assign k1_sel = k1_sel_reg;
  assign soft_reset = soft_reset_reg;
  assign mmio_submit = mmio_submit_reg;
  assign mmio_in = mmio_in_reg;

  wire [31:0] wmask = {{8{w_strb_reg[3]}}, {8{w_strb_reg[2]}}, {8{w_strb_reg[1]}}, {8{w_strb_reg[0]}}};
  wire do_write = aw_hold_reg && w_hold_reg && !bvalid_reg;
  wire [`TF_AXIL_ADDR_BITS-1:0] waddr = {aw_addr_reg[`TF_AXIL_ADDR_BITS-1:2], 2'b00};
  wire [`TF_AXIL_ADDR_BITS-1:0] raddr = {s_axil_araddr[`TF_AXIL_ADDR_BITS-1:2], 2'b00};
  wire ar_fire = s_axil_arvalid && s_axil_arready;

  wire [31:0] status = {
    28'd0,
    mmio_busy,
    mmio_done,
    idle,
    reset_busy
  };
  localparam [7:0] CFG_N_EMA = `TF_N_EMA;
  localparam [7:0] CFG_LATENCY = LATENCY;
  localparam [7:0] CFG_FRAC = `TF_EMA_FRAC_BITS;
  wire [31:0] config_word = {8'd0, CFG_N_EMA, CFG_LATENCY, CFG_FRAC};

  integer wi;
  always @* begin
    wi = 0;
    aw_hold_next = aw_hold_reg;
    aw_addr_next = aw_addr_reg;
    w_hold_next = w_hold_reg;
    w_data_next = w_data_reg;
    w_strb_next = w_strb_reg;
    bvalid_next = bvalid_reg && !s_axil_bready;
    rvalid_next = rvalid_reg && !s_axil_rready;
    rdata_next = rdata_reg;
    enable_next = enable_reg;
    k0_next = k0_reg;
    k1_next = k1_reg;
    k0_sel_next = k0_sel_reg;
    k1_sel_next = k1_sel_reg;
    soft_reset_next = 1'b0;
    mmio_submit_next = 1'b0;
    mmio_in_next = mmio_in_reg;
    in_hi_next = in_hi_reg;
    out_hi_next = out_hi_reg;
    rej_sym_hi_next = rej_sym_hi_reg;
    rej_kind_hi_next = rej_kind_hi_reg;

    if (s_axil_awvalid && s_axil_awready) begin
      aw_hold_next = 1'b1;
      aw_addr_next = s_axil_awaddr;
    end
    if (s_axil_wvalid && s_axil_wready) begin
      w_hold_next = 1'b1;
      w_data_next = s_axil_wdata;
      w_strb_next = s_axil_wstrb;
    end

    if (do_write) begin
      aw_hold_next = 1'b0;
      w_hold_next = 1'b0;
      bvalid_next = 1'b1;
      if (waddr[7:6] == 2'b01) begin
        // MMIO_IN window: 16 words of the input slot, byte strobes applied
        // (one decoded enable per word: no variable-index write).
        for (wi = 0; wi < 16; wi = wi + 1) begin
          if (waddr[5:2] == wi[3:0])
            mmio_in_next[32*wi+:32] = (mmio_in_reg[32*wi+:32] & ~wmask) | (w_data_reg & wmask);
        end
      end else begin
        case (waddr)
          `TF_REG_CTRL:
          if (w_strb_reg[0]) begin
            enable_next = w_data_reg[`TF_CTRL_ENABLE_BIT];
            soft_reset_next = w_data_reg[`TF_CTRL_SOFT_RESET_BIT];
            mmio_submit_next = w_data_reg[`TF_CTRL_MMIO_SUBMIT_BIT];
          end
          `TF_REG_K0:
          if (w_strb_reg[0] && k0_wr_ix[2]) begin
            k0_next = w_data_reg[KW-1:0];
            k0_sel_next = k0_wr_ix[1:0];
          end
          `TF_REG_K1:
          if (w_strb_reg[0] && k1_wr_ix[2]) begin
            k1_next = w_data_reg[KW-1:0];
            k1_sel_next = k1_wr_ix[1:0];
          end
          default: ;
        endcase
      end
    end

    if (ar_fire) begin
      rvalid_next = 1'b1;
      if (raddr[7]) begin
        rdata_next = mmio_out[{raddr[6:2], 5'd0}+:32];
      end else begin
        case (raddr)
          `TF_REG_ID: rdata_next = `TF_CORE_ID;
          `TF_REG_VERSION: rdata_next = `TF_CORE_VERSION;
          `TF_REG_CTRL: rdata_next = {30'd0, reset_busy, enable_reg};
          `TF_REG_STATUS: rdata_next = status;
          `TF_REG_K0: rdata_next = {{(32 - 5 * KW) {1'b0}}, K0_SET, k0_reg};
          `TF_REG_K1: rdata_next = {{(32 - 5 * KW) {1'b0}}, K1_SET, k1_reg};
          `TF_REG_N_SYMBOLS: rdata_next = N_SYMBOLS;
          `TF_REG_CONFIG: rdata_next = config_word;
          `TF_REG_RECORDS_IN_LO: begin
            rdata_next = records_in[31:0];
            in_hi_next = records_in[63:32];
          end
          `TF_REG_RECORDS_IN_HI: rdata_next = in_hi_reg;
          `TF_REG_RECORDS_OUT_LO: begin
            rdata_next = records_out[31:0];
            out_hi_next = records_out[63:32];
          end
          `TF_REG_RECORDS_OUT_HI: rdata_next = out_hi_reg;
          `TF_REG_REJECT_SYMBOL_LO: begin
            rdata_next = reject_symbol[31:0];
            rej_sym_hi_next = reject_symbol[63:32];
          end
          `TF_REG_REJECT_SYMBOL_HI: rdata_next = rej_sym_hi_reg;
          `TF_REG_REJECT_KIND_LO: begin
            rdata_next = reject_kind[31:0];
            rej_kind_hi_next = reject_kind[63:32];
          end
          `TF_REG_REJECT_KIND_HI: rdata_next = rej_kind_hi_reg;
          default: rdata_next = 32'd0;
        endcase
      end
    end
  end

  always @(posedge clk) begin
    aw_hold_reg <= aw_hold_next;
    aw_addr_reg <= aw_addr_next;
    w_hold_reg <= w_hold_next;
    w_data_reg <= w_data_next;
    w_strb_reg <= w_strb_next;
    bvalid_reg <= bvalid_next;
    rvalid_reg <= rvalid_next;
    rdata_reg <= rdata_next;
    enable_reg <= enable_next;
    k0_reg <= k0_next;
    k1_reg <= k1_next;
    k0_sel_reg <= k0_sel_next;
    k1_sel_reg <= k1_sel_next;
    soft_reset_reg <= soft_reset_next;
    mmio_submit_reg <= mmio_submit_next;
    mmio_in_reg <= mmio_in_next;
    in_hi_reg <= in_hi_next;
    out_hi_reg <= out_hi_next;
    rej_sym_hi_reg <= rej_sym_hi_next;
    rej_kind_hi_reg <= rej_kind_hi_next;
    if (rst) begin
      aw_hold_reg <= 1'b0;
      w_hold_reg <= 1'b0;
      bvalid_reg <= 1'b0;
      rvalid_reg <= 1'b0;
      enable_reg <= 1'b0;
      k0_reg <= `TF_K0_RESET;
      k1_reg <= `TF_K1_RESET;
      k0_sel_reg <= K0_RESET_IX[1:0];
      k1_sel_reg <= K1_RESET_IX[1:0];
      soft_reset_reg <= 1'b0;
      mmio_submit_reg <= 1'b0;
      mmio_in_reg <= 0;
    end
  end

endmodule

`default_nettype wire
