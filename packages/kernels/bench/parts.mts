import { packW4A4, quantizeActivations, gemmW4A4, setThreads } from "../src/index.ts";
const [M,K,N,R]=[1024,3072,3072,32];
const rnd=(n:number,s=1)=>Float32Array.from({length:n},()=>(Math.random()-0.5)*s);
const x=rnd(M*K), ld=rnd(R*K,0.1), lu=rnd(N*R,0.1), sm=rnd(K).map(v=>1+Math.abs(v));
const codes=Int8Array.from({length:N*K},()=>Math.floor(Math.random()*16)-8);
const sc=rnd(N*K/64).map(Math.abs);
const w=packW4A4({codes,scales:sc},N,K,{lowRankUp:lu,rank:R});
const w0=packW4A4({codes,scales:sc},N,K);
const t=(f:()=>void,n=5)=>{f();const s=performance.now();for(let i=0;i<n;i++)f();return (performance.now()-s)/n;};
for (const th of [Number(process.argv[2]??2)]) {
setThreads(th);
const ta=t(()=>quantizeActivations(x,M,K,{smooth:sm,lowRankDown:ld,rank:R}));
const ta0=t(()=>quantizeActivations(x,M,K,{smooth:sm}));
const act=quantizeActivations(x,M,K,{lowRankDown:ld,rank:R});
const act0=quantizeActivations(x,M,K);
const tg=t(()=>gemmW4A4(act,w));
const tg0=t(()=>gemmW4A4(act0,w0));
console.log(`threads ${th}: actquant LR ${ta.toFixed(1)} noLR ${ta0.toFixed(1)} | gemm LR ${tg.toFixed(1)} noLR ${tg0.toFixed(1)} ms`);
}
