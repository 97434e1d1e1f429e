// OUR OWN behavioural model of the DSP48E2 subset that tick_features_core.v
// instantiates when TF_XILINX_DSP48E2 is defined -- written for tickpath's
// simulation from the documented behaviour of the primitive (UG579, UG974),
// NOT Xilinx's simulation model and not a substitute for it.  Simulation only:
// never in synthesis (Yosys and Vivado have the real primitive).
//
// Subset: multiply only, P = A * B (signed 27 x 18, the low 27 bits of A and
// the 18 bits of B, sign-extended to 48 bits), A and B from the A/B ports
// (no cascade, no pre-adder), AREG / BREG 0 or 1, MREG 0 or 1, PREG 0 or 1,
// clock enables on those registers, synchronous resets RSTA / RSTB / RSTM /
// RSTP.  Any other configuration or control value ends the simulation with
// an error instead of being modelled wrongly.

`default_nettype none
`timescale 1ns / 1ps

module DSP48E2 #(
    parameter integer AREG = 1,
    parameter integer ACASCREG = 1,
    parameter integer BREG = 1,
    parameter integer BCASCREG = 1,
    parameter integer MREG = 1,
    parameter integer PREG = 1,
    parameter integer ADREG = 1,
    parameter integer DREG = 1,
    parameter integer CREG = 1,
    parameter integer INMODEREG = 1,
    parameter integer OPMODEREG = 1,
    parameter integer ALUMODEREG = 1,
    parameter integer CARRYINREG = 1,
    parameter integer CARRYINSELREG = 1,
    parameter A_INPUT = "DIRECT",
    parameter B_INPUT = "DIRECT",
    parameter AMULTSEL = "A",
    parameter BMULTSEL = "B",
    parameter PREADDINSEL = "A",
    parameter USE_MULT = "MULTIPLY",
    parameter USE_SIMD = "ONE48",
    parameter USE_PATTERN_DETECT = "NO_PATDET"
) (
    input wire CLK,
    input wire [29:0] A,
    input wire [17:0] B,
    input wire [47:0] C,
    input wire [26:0] D,
    input wire [29:0] ACIN,
    input wire [17:0] BCIN,
    input wire [47:0] PCIN,
    input wire CARRYCASCIN,
    input wire MULTSIGNIN,
    input wire CARRYIN,
    input wire [2:0] CARRYINSEL,
    input wire [4:0] INMODE,
    input wire [8:0] OPMODE,
    input wire [3:0] ALUMODE,
    input wire CEA1,
    input wire CEA2,
    input wire CEB1,
    input wire CEB2,
    input wire CEAD,
    input wire CED,
    input wire CEC,
    input wire CEM,
    input wire CEP,
    input wire CEINMODE,
    input wire CECTRL,
    input wire CEALUMODE,
    input wire CECARRYIN,
    input wire RSTA,
    input wire RSTB,
    input wire RSTC,
    input wire RSTD,
    input wire RSTM,
    input wire RSTP,
    input wire RSTINMODE,
    input wire RSTCTRL,
    input wire RSTALUMODE,
    input wire RSTALLCARRYIN,
    output wire [47:0] P
);
  // Configurations outside the subset are errors, not silently other logic.
  initial begin
    if (AREG > 1 || BREG > 1 || MREG > 1 || PREG > 1 || ACASCREG != AREG || BCASCREG != BREG)
      $fatal(1, "DSP48E2 model: only AREG/BREG/MREG/PREG 0 or 1 (xCASCREG = xREG)");
    if (A_INPUT != "DIRECT" || B_INPUT != "DIRECT" || AMULTSEL != "A" || BMULTSEL != "B")
      $fatal(1, "DSP48E2 model: only direct A/B into the multiplier (no cascade, no pre-adder)");
    if (USE_MULT != "MULTIPLY" || USE_SIMD != "ONE48" || USE_PATTERN_DETECT != "NO_PATDET")
      $fatal(1, "DSP48E2 model: only USE_MULT MULTIPLY, USE_SIMD ONE48, no pattern detect");
  end
  always @(posedge CLK) begin
    if (OPMODE !== 9'b00_000_01_01 || ALUMODE !== 4'b0000 || INMODE !== 5'b00000 ||
        CARRYIN !== 1'b0 || CARRYINSEL !== 3'b000)
      $fatal(1, "DSP48E2 model: only OPMODE P = M (X = Y = M), ALUMODE add, INMODE 0, no carry");
  end

  reg [29:0] a2_reg = 30'd0;
  reg [17:0] b2_reg = 18'd0;
  reg [47:0] m_reg = 48'd0;
  reg [47:0] p_reg = 48'd0;
  always @(posedge CLK) begin
    if (RSTA) a2_reg <= 30'd0;
    else if (CEA2) a2_reg <= A;
    if (RSTB) b2_reg <= 18'd0;
    else if (CEB2) b2_reg <= B;
  end
  wire [29:0] a_mult = (AREG == 1) ? a2_reg : A;
  wire [17:0] b_mult = (BREG == 1) ? b2_reg : B;
  // The multiplier: signed 27 x 18 -> 45 bits, sign-extended to 48 (the
  // DSP48E2 forms it as two partial products; their sum is this product).
  wire signed [44:0] m_product = $signed(a_mult[26:0]) * $signed(b_mult);
  wire [47:0] m_w = {{3{m_product[44]}}, m_product};
  always @(posedge CLK) begin
    if (RSTM) m_reg <= 48'd0;
    else if (CEM) m_reg <= m_w;
  end
  wire [47:0] alu_w = (MREG == 1) ? m_reg : m_w;  // X + Y = M, Z = W = 0
  always @(posedge CLK) begin
    if (RSTP) p_reg <= 48'd0;
    else if (CEP) p_reg <= alu_w;
  end
  assign P = (PREG == 1) ? p_reg : alu_w;
endmodule

`default_nettype wire
