# Build the PYNQ overlay: Zynq UltraScale+ PS + AXI DMA + tick_features, for a ZCU104.
#
#   vivado -mode batch -source fpga/tick_features/syn/package_ip.tcl -tclargs build/ip_repo
#   vivado -mode batch -source fpga/tick_features/syn/build_overlay.tcl \
#          -tclargs build/ip_repo build/overlay [jobs]
#
# Run from the repository root.  Produces build/overlay/tick_features.bit and
# build/overlay/tick_features.hwh (PYNQ's Overlay() reads both; copy them side by
# side to the board).  Board: ZCU104 (xczu7ev-ffvc1156-2-e).  For a KV260 use
# part xck26-sfvc784-2LV-c and board_part xilinx.com:kv260_som:part0:1.4.
#
# Data path (one clock domain, pl_clk0 at CLOCK_MHZ):
#   PS DDR <-HP0-> axi_dma MM2S -> tick_features s_axis (512-bit slots)
#   tick_features m_axis (1024-bit features) -> axi_dma S2MM -HP0-> PS DDR
#   PS HPM0 -> AXI interconnect -> axi_dma S_AXI_LITE, tick_features s_axil

set ip_repo  [file normalize [expr {[llength $argv] > 0 ? [lindex $argv 0] : "build/ip_repo"}]]
set out_dir  [file normalize [expr {[llength $argv] > 1 ? [lindex $argv 1] : "build/overlay"}]]
set jobs     [expr {[llength $argv] > 2 ? [lindex $argv 2] : 4}]
set part       "xczu7ev-ffvc1156-2-e"
set board_part "xilinx.com:zcu104:part0:1.1"
set design     "tick_features"
set CLOCK_MHZ  200

file mkdir $out_dir
create_project $design [file join $out_dir vivado] -part $part -force
set_property board_part $board_part [current_project]
set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog

create_bd_design $design

# Processing system with the board preset; one HP port for the DMA, pl_clk0.
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e zynq_ultra_ps_e_0]
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e \
    -config {apply_board_preset "1"} $ps
set_property -dict [list \
    CONFIG.PSU__USE__S_AXI_GP2 {1} \
    CONFIG.PSU__SAXIGP2__DATA_WIDTH {128} \
    CONFIG.PSU__USE__M_AXI_GP1 {0} \
    CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $CLOCK_MHZ] $ps

# AXI DMA: simple mode (no scatter-gather); memory-map widths equal to the stream
# widths of the core (the SmartConnect converts to the 128-bit HP port).
set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma axi_dma_0]
set_property -dict [list \
    CONFIG.c_include_sg {0} \
    CONFIG.c_sg_length_width {26} \
    CONFIG.c_m_axi_mm2s_data_width {512} \
    CONFIG.c_m_axis_mm2s_tdata_width {512} \
    CONFIG.c_mm2s_burst_size {16} \
    CONFIG.c_m_axi_s2mm_data_width {1024} \
    CONFIG.c_s_axis_s2mm_tdata_width {1024} \
    CONFIG.c_s2mm_burst_size {16}] $dma

# The core.
set core [create_bd_cell -type ip -vlnv tickpath.dev:tickpath:tick_features:1.0 tick_features_0]
set_property -dict [list CONFIG.N_SYMBOLS {4096} CONFIG.MUL_STAGES {4}] $core

connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXIS_MM2S] [get_bd_intf_pins tick_features_0/s_axis]
connect_bd_intf_net [get_bd_intf_pins tick_features_0/m_axis] [get_bd_intf_pins axi_dma_0/S_AXIS_S2MM]

# Control: PS master -> DMA and core registers.  Data: DMA masters -> PS HP0.
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list \
    Master /zynq_ultra_ps_e_0/M_AXI_HPM0_FPD Clk_master Auto Clk_slave Auto Clk_xbar Auto] \
    [get_bd_intf_pins axi_dma_0/S_AXI_LITE]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list \
    Master /zynq_ultra_ps_e_0/M_AXI_HPM0_FPD Clk_master Auto Clk_slave Auto Clk_xbar Auto] \
    [get_bd_intf_pins tick_features_0/s_axil]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list \
    Slave /zynq_ultra_ps_e_0/S_AXI_HP0_FPD Clk_master Auto Clk_slave Auto Clk_xbar Auto] \
    [get_bd_intf_pins axi_dma_0/M_AXI_MM2S]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list \
    Slave /zynq_ultra_ps_e_0/S_AXI_HP0_FPD Clk_master Auto Clk_slave Auto Clk_xbar Auto] \
    [get_bd_intf_pins axi_dma_0/M_AXI_S2MM]
apply_bd_automation -rule xilinx.com:bd_rule:clkrst -config {Clk /zynq_ultra_ps_e_0/pl_clk0} \
    [get_bd_pins tick_features_0/aclk]

assign_bd_address
validate_bd_design
save_bd_design

set bd_file [get_files ${design}.bd]
make_wrapper -files $bd_file -top
add_files -norecurse [file join [file dirname $bd_file] hdl ${design}_wrapper.v]
set_property top ${design}_wrapper [current_fileset]

launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    error "implementation failed"
}

# Timing and utilisation reports next to the bitstream.
open_run impl_1
report_timing_summary -file [file join $out_dir timing_summary.rpt]
report_utilization -file [file join $out_dir utilization.rpt]

# PYNQ wants <name>.bit and <name>.hwh side by side.
set impl_dir [get_property DIRECTORY [get_runs impl_1]]
file copy -force [file join $impl_dir ${design}_wrapper.bit] [file join $out_dir ${design}.bit]
set hwh [lindex [glob -nocomplain [file join [file dirname $bd_file] hw_handoff *.hwh]] 0]
file copy -force $hwh [file join $out_dir ${design}.hwh]
puts "overlay: [file join $out_dir ${design}.bit] and ${design}.hwh"
