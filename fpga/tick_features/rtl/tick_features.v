// tick_features: top level of the tick-features IP (VLNV
// tickpath.dev:tickpath:tick_features:1.0).  One clock domain (aclk) for the
// AXI4-Lite control port and both AXI4-Stream ports; active-low reset.
//
//   s_axis (512-bit slots) --> tick_features_core --> m_axis (1024-bit features)
//   s_axil (control, status, counters, MMIO path) <--> tick_features_axil

`default_nettype none
`timescale 1ns / 1ps

`include "tick_features_fields.vh"

module tick_features #(
    parameter N_SYMBOLS = 4096,  // symbol state entries; symbol ids >= N_SYMBOLS are rejected
    parameter MUL_STAGES = 4,  // stages before the state update (>= 3); latency = MUL_STAGES + 3
    parameter OUT_FIFO_DEPTH = 16,  // output FIFO entries: a power of two >= MUL_STAGES + 4
    parameter [`TF_K_BITS*4-1:0] K0_SET = `TF_K0_SET,  // the four k (alpha = 2^-k) of EMA 0, 5 bits each
    parameter [`TF_K_BITS*4-1:0] K1_SET = `TF_K1_SET  // the four k of EMA 1; the K registers take only these
) (
    input wire aclk,
    input wire aresetn,

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

    input  wire [`TF_IN_W-1:0] s_axis_tdata,
    input  wire                s_axis_tvalid,
    output wire                s_axis_tready,
    input  wire                s_axis_tlast,

    output wire [  `TF_OUT_W-1:0] m_axis_tdata,
    output wire [`TF_OUT_W/8-1:0] m_axis_tkeep,
    output wire                   m_axis_tvalid,
    input  wire                   m_axis_tready,
    output wire                   m_axis_tlast
);

  localparam LATENCY = MUL_STAGES + 3;

  // Synchronous, registered reset.
  reg rst_reg = 1'b1;
  always @(posedge aclk) rst_reg <= !aresetn;

  wire enable, soft_reset, mmio_submit, reset_busy, idle, mmio_done, mmio_busy;
  wire [1:0] k0_sel, k1_sel;
  wire [`TF_IN_W-1:0] mmio_in;
  wire [`TF_OUT_W-1:0] mmio_out;
  wire [63:0] records_in, records_out, reject_symbol, reject_kind;

  tick_features_axil #(
      .N_SYMBOLS(N_SYMBOLS),
      .LATENCY(LATENCY),
      .K0_SET(K0_SET),
      .K1_SET(K1_SET)
  ) regs (
      .clk(aclk),
      .rst(rst_reg),
      .s_axil_awaddr(s_axil_awaddr),
      .s_axil_awprot(s_axil_awprot),
      .s_axil_awvalid(s_axil_awvalid),
      .s_axil_awready(s_axil_awready),
      .s_axil_wdata(s_axil_wdata),
      .s_axil_wstrb(s_axil_wstrb),
      .s_axil_wvalid(s_axil_wvalid),
      .s_axil_wready(s_axil_wready),
      .s_axil_bresp(s_axil_bresp),
      .s_axil_bvalid(s_axil_bvalid),
      .s_axil_bready(s_axil_bready),
      .s_axil_araddr(s_axil_araddr),
      .s_axil_arprot(s_axil_arprot),
      .s_axil_arvalid(s_axil_arvalid),
      .s_axil_arready(s_axil_arready),
      .s_axil_rdata(s_axil_rdata),
      .s_axil_rresp(s_axil_rresp),
      .s_axil_rvalid(s_axil_rvalid),
      .s_axil_rready(s_axil_rready),
      .enable(enable),
      .k0_sel(k0_sel),
      .k1_sel(k1_sel),
      .soft_reset(soft_reset),
      .mmio_submit(mmio_submit),
      .mmio_in(mmio_in),
      .reset_busy(reset_busy),
      .idle(idle),
      .mmio_done(mmio_done),
      .mmio_busy(mmio_busy),
      .mmio_out(mmio_out),
      .records_in(records_in),
      .records_out(records_out),
      .reject_symbol(reject_symbol),
      .reject_kind(reject_kind)
  );

  tick_features_core #(
      .N_SYMBOLS(N_SYMBOLS),
      .MUL_STAGES(MUL_STAGES),
      .OUT_FIFO_DEPTH(OUT_FIFO_DEPTH),
      .K0_SET(K0_SET),
      .K1_SET(K1_SET)
  ) core (
      .clk(aclk),
      .rst(rst_reg),
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
      .k0_sel(k0_sel),
      .k1_sel(k1_sel),
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
      .reject_kind(reject_kind)
  );

endmodule

`default_nettype wire
